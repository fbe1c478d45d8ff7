"""Sphinx configuration for kdtext.

Sphinx + numpydoc because kdtext's docstrings are numpydoc (as scikit-learn's),
autosummary generates the API reference from them, and intersphinx is not
used so the build needs no network.
"""

import os
import sys

sys.path.insert(0, os.path.abspath(".."))

import kdtext  # noqa: E402

project = "kdtext"
author = "kdtext developers"
release = kdtext.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.viewcode",
    "numpydoc",
]
autosummary_generate = True
autodoc_typehints = "none"
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_validation_checks = set()
autodoc_mock_imports = []
templates_path = []
exclude_patterns = ["_build"]
html_theme = "pydata_sphinx_theme" if __import__("importlib").util.find_spec("pydata_sphinx_theme") else "alabaster"
html_title = f"kdtext {release}"
nitpicky = False
suppress_warnings = ["autosummary.import_cycle"]
