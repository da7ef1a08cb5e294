"""Sphinx configuration: API reference from the docstrings, guide pages from README.md, notebooks.

Builds offline: no intersphinx, and the notebooks are rendered as committed, without running them.
"""

import functools
import pathlib
import sys

from ipython_pygments_lexers import IPython3Lexer

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # The checkout's znorm_optax, whether or not it is installed.

import znorm_optax

project = 'znorm_optax'
author = 'znorm_optax authors'
copyright = '2024, znorm_optax authors'
release = znorm_optax.__version__
version = release

extensions = [
    'myst_nb',
    'sphinx.ext.autodoc',
    'sphinx.ext.mathjax',
    'sphinx.ext.napoleon',
    'sphinx.ext.viewcode',
]

exclude_patterns = ['_build', '**.ipynb_checkpoints']

# Google-style docstrings, as in optax and Flax.
napoleon_google_docstring = True
napoleon_numpy_docstring = False
autodoc_member_order = 'bysource'
# Types are in the docstrings; optax's type aliases would expand to lines of unions here.
autodoc_typehints = 'none'

# The notebooks are committed without outputs and executed by the test suite, not by the docs.
nb_execution_mode = 'off'
myst_enable_extensions = ['dollarmath', 'amsmath']
myst_heading_anchors = 3

html_theme = 'sphinx_book_theme'
html_title = 'znorm_optax'
html_theme_options = {
    'repository_url': 'https://github.com/znorm-optax/znorm_optax',
    'use_repository_button': True,
    'path_to_docs': 'docs',
}


def setup(app):
  # The notebooks' cells are IPython (`%pip`, `!git`), but notebooks saved by Colab name their
  # language plain 'python', which is what myst-nb highlights them as.
  app.add_lexer('python', functools.partial(IPython3Lexer, stripnl=False))
