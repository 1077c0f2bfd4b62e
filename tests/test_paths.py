"""One cache directory for every cache of the package: $WCLUST_CACHE, else $XDG_CACHE_HOME/wclust, else ~/.cache/wclust."""
import os

import pytest

from wclust import paths
from wclust.errors import WclustError


def test_cache_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("WCLUST_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert paths.cache_dir() == str(tmp_path / "home" / ".cache" / "wclust")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert paths.cache_dir() == str(tmp_path / "xdg" / "wclust")
    monkeypatch.setenv("WCLUST_CACHE", str(tmp_path / "mine"))
    assert paths.cache_dir() == str(tmp_path / "mine")
    assert paths.cache_dir("features", "a.npy") == str(tmp_path / "mine" / "features" / "a.npy")
    assert not (tmp_path / "mine").exists()              # naming it does not make it


def test_every_cache_follows_wclust_cache(monkeypatch, tmp_path):
    """Host calibration and the converted DINOv2 resolve below it (the fp32 features: test_evaluate)."""
    from wclust.performance import platforms
    from wclust.sources import dinov2

    monkeypatch.setenv("WCLUST_CACHE", str(tmp_path))
    assert platforms._cache_path() == str(tmp_path / "host_calibration.json")

    def no_onnx():
        raise LookupError("would convert")

    monkeypatch.setattr(dinov2, "onnx_path", no_onnx)
    with pytest.raises(LookupError):                      # no converted model below WCLUST_CACHE yet
        dinov2.converted_dir()
    (tmp_path / "dinov2-s").mkdir()
    (tmp_path / "dinov2-s" / "model.safetensors").write_bytes(b"x")
    (tmp_path / "dinov2-s" / "config.json").write_text('{"wclust_cache_version": %d}' % dinov2.CACHE_VERSION)
    assert dinov2.converted_dir() == str(tmp_path / "dinov2-s")


def test_package_file(tmp_path):
    path = paths.package_file("wclust", "paths.py", "a test")
    assert os.path.samefile(path, paths.__file__)
    with pytest.raises(WclustError, match="pip install --no-deps not-a-pkg"):
        paths.package_file("not_a_pkg_xyz", "a", "zoo:x", "not-a-pkg")
    with pytest.raises(WclustError, match="is missing"):
        paths.package_file("wclust", "no/such/file", "a test")
