"""Sphinx configuration of sb3-po's documentation (built in CI with warnings as errors).

pip install -e ".[docs]"
sphinx-build -W --keep-going -b html docs docs/_build/html
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the working copy's sb3_po, as the code blocks and the tests use it

from sb3_po.version import __version__  # noqa: E402

project = "sb3-po"
author = "sb3-po developers"
copyright = "sb3-po developers"
version = release = __version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.viewcode",
    "sphinx_rtd_theme",
]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3
exclude_patterns = ["_build", "results/generated/*.md"]  # generated fragments are included, not pages of their own

autodoc_default_options = {"members": True, "inherited-members": True, "show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_format = "short"
html_theme = "sphinx_rtd_theme"
html_title = f"sb3-po {release}"
html_static_path = ["_static"]
html_css_files = ["custom.css"]
html_theme_options = {"navigation_depth": 3, "collapse_navigation": False}
