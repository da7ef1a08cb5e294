"""znorm_optax: ZNorm (Z-score gradient normalization) for optax."""

from znorm_optax.adam import znorm_adam
from znorm_optax.centralization import centralize
from znorm_optax.named_axes import stacked_axes_from_specs
from znorm_optax.normalization import znorm
from znorm_optax.statistics import LeafStatistics
from znorm_optax.statistics import gradient_statistics

__version__ = '0.1.0'

__all__ = (
    'LeafStatistics',
    'centralize',
    'gradient_statistics',
    'stacked_axes_from_specs',
    'znorm',
    'znorm_adam',
)
