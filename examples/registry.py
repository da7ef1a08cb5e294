"""The examples ``python -m examples.main`` runs, by name (``config.example``): one line each."""

import importlib
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # At run time the record is imported with the example: JAX, Flax, its data.
  from examples.study.example import Example
  from examples.training.fields import Field

EXAMPLES = {
    'image_classification': 'examples.image_classification',
    'language_model': 'examples.language_model',
    'unet_segmentation': 'examples.unet_segmentation',
}
"""Each example's name and package. The package holds ``configs/default.py`` (``FIELDS``) and
``example.py`` (``EXAMPLE``, an :class:`examples.study.example.Example`)."""


def package(name: str) -> str:
  """The package of example ``name``; a ``ValueError`` names ``--config.example`` otherwise."""
  if name not in EXAMPLES:
    raise ValueError(f'--config.example={name!r} names no example; valid examples are: '
                     f'{", ".join(sorted(EXAMPLES))}.')
  return EXAMPLES[name]


def fields(name: str) -> Mapping[str, 'Field']:
  """The example's own field declarations, read without importing its models or data."""
  return importlib.import_module(f'{package(name)}.configs.default').FIELDS


def load(name: str) -> 'Example':
  """The example's record, ``<package>.example.EXAMPLE``."""
  return importlib.import_module(f'{package(name)}.example').EXAMPLE
