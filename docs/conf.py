"""Sphinx configuration: Markdown pages (MyST) and an API reference from docstrings."""

from __future__ import annotations

import importlib.metadata

project = "sfn-activities"
author = "sfn-activities maintainers"
release = importlib.metadata.version("sfn-activities")
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
]
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build"]
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_format = "short"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_ivar = True

# References nitpicky mode cannot resolve because they name third-party types that have
# no inventory here (builds run offline) or private names.
nitpick_ignore_regex = [
    (
        r"py:.*",
        r"(cattrs|botocore|boto3|mypy_boto3_stepfunctions|attrs|inspect|datetime|collections\.abc|typing|dt|logging)\..*",
    ),
    (
        r"py:.*",
        r"(SFNClient|S3Client|Transport|Task|Activity|Outcome|RetryPolicy|T|Any|Callable|Mapping|NoReturn|Generator|Path|Self)",
    ),
    (r"py:.*", r"(pathlib|types)\..*"),
    (
        r"py:class",
        r"(str|int|bool|float|object|type|tuple|dict|list|BaseException|Exception|TypeError|ValueError|None)",
    ),
    (r"py:.*", r"activities\.(outcome|task|activity|function|client|errors|testing|local)\..*"),
    (r"py:.*", r"transport\.(base|converter|default|compressed|errors)\..*"),
]

html_theme = "furo"
html_title = "sfn-activities"
