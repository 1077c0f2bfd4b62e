"""Atomic saves: a writer killed mid-save leaves the old file intact; its temp file is cleaned up."""
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import wclust
from tests.conftest import TinyTransformer
from tests.fuzzing import fingerprint

ROOT = Path(__file__).resolve().parents[1]

# A child that saves to argv[2] and stops at a hook: half-way through writing the temp file
# ("write") or just before the rename ("fsync"); it says READY and waits to be killed.
CHILD = r"""
import os, sys, time, torch, wclust
from tests.conftest import TinyTransformer
mode, path = sys.argv[1], sys.argv[2]
torch.manual_seed(1)
m = wclust.compress(TinyTransformer(), wclust.ClusterConfig(8, min_size=64), progress=False)
real_fdopen = os.fdopen

class Slow:
    def __init__(self, f):
        self.f = f
    def write(self, data):
        self.f.write(data[: len(data) // 2])
        self.f.flush()
        print("READY", flush=True)
        time.sleep(300)
    def __getattr__(self, name):
        return getattr(self.f, name)
    def __enter__(self):
        return self
    def __exit__(self, *exc):
        return self.f.__exit__(*exc)

def stuck_fsync(fd):
    print("READY", flush=True)
    time.sleep(300)

if mode == "write":
    os.fdopen = lambda *a, **k: Slow(real_fdopen(*a, **k))
else:
    os.fsync = stuck_fsync
wclust.save(m, path)
"""


def _model(seed: int):
    torch.manual_seed(seed)
    return wclust.compress(TinyTransformer(), wclust.ClusterConfig(8, min_size=64), progress=False)


@pytest.mark.parametrize("mode", ["write", "fsync"])
def test_killed_save_keeps_old_file_and_next_save_cleans_up(tmp_path, mode):
    path = tmp_path / "m.wclust"
    wclust.save(_model(0), path)
    old = path.read_bytes()
    ref = fingerprint(wclust.load(path, model=TinyTransformer()))
    child = subprocess.Popen([sys.executable, "-c", CHILD, mode, str(path)], cwd=ROOT, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True)
    try:
        assert child.stdout.readline().strip() == "READY"
        stray = [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]
        assert len(stray) == 1 and stray[0].startswith(f".m.wclust.{child.pid}.")   # the save is under way
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL
    assert path.read_bytes() == old                                    # old file untouched
    assert fingerprint(wclust.load(path, model=TinyTransformer())) == ref
    assert any(n.endswith(".tmp") for n in os.listdir(tmp_path))       # the killed writer's leftover
    wclust.save(_model(2), path)                                       # the next save removes it
    assert os.listdir(tmp_path) == ["m.wclust"]
    assert fingerprint(wclust.load(path, model=TinyTransformer())) != ref


def test_cleanup_spares_live_writers_and_other_files(tmp_path):
    path = tmp_path / "x.wclust"
    dead_pid = 2**22 + 12345   # above the kernel's pid_max: no such process
    keep = [f".x.wclust.{os.getppid()}.abcd.tmp",    # a live process may still be writing it
            f".x.wclust.{os.getpid()}.abcd.tmp",     # ours (another thread)
            ".x.wclust.notes.tmp", f".y.wclust.{dead_pid}.abcd.tmp", "x.wclust.tmp"]
    for name in keep + [f".x.wclust.{dead_pid}.abcd.tmp"]:
        (tmp_path / name).write_bytes(b"partial")
    wclust.save(_model(0), path)
    assert sorted(os.listdir(tmp_path)) == sorted(keep + ["x.wclust"])


def test_failed_write_leaves_old_file_and_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "x.wclust"
    wclust.save(_model(0), path)
    old = path.read_bytes()

    def broken_fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="No space"):
        wclust.save(_model(1), path)
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["x.wclust"] and path.read_bytes() == old


def test_save_keeps_file_mode(tmp_path):
    path = tmp_path / "x.wclust"
    wclust.save(_model(0), path)
    assert path.stat().st_mode & 0o777 == 0o644
    path.chmod(0o600)
    wclust.save(_model(1), path)
    assert path.stat().st_mode & 0o777 == 0o600


def test_threads_writing_one_path_never_share_a_temp_file(tmp_path):
    """Eight threads rewrite one file 25 times each: every read sees one whole payload, none is left half."""
    import threading

    from wclust import atomic

    path = tmp_path / "r.json"
    payloads = {i: bytes([65 + i]) * (4096 + 997 * i) for i in range(8)}
    errors, go = [], threading.Barrier(8)

    def writer(i):
        try:
            go.wait()
            for _ in range(25):
                atomic.atomic_write_bytes(path, payloads[i])
                assert path.read_bytes() in payloads.values()
        except BaseException as e:   # noqa: BLE001  (reported below)
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert path.read_bytes() in payloads.values() and os.listdir(tmp_path) == ["r.json"]


def test_temp_name_has_pid_thread_and_random(tmp_path, monkeypatch):
    import threading

    from wclust import atomic

    names = []
    real = atomic.os.replace
    monkeypatch.setattr(atomic.os, "replace", lambda a, b: names.append(os.path.basename(a)) or real(a, b))
    atomic.atomic_write_bytes(tmp_path / "f.bin", b"1")
    atomic.atomic_write_bytes(tmp_path / "f.bin", b"2")
    prefix = f".f.bin.{os.getpid()}.{threading.get_ident()}."
    assert all(n.startswith(prefix) and n.endswith(".tmp") for n in names) and names[0] != names[1]
    assert (tmp_path / "f.bin").read_bytes() == b"2"


def test_npy_json_and_directory_writers(tmp_path):
    import json

    import numpy as np

    from wclust import atomic

    arr = np.arange(12, dtype=np.float32).reshape(3, 4)
    atomic.atomic_save_npy(tmp_path / "sub" / "a.npy", arr)     # its directory made
    assert np.array_equal(np.load(tmp_path / "sub" / "a.npy"), arr)
    atomic.atomic_write_json(tmp_path / "r.json", {"x": float("nan"), "y": np.float32(1.5), "z": float("-inf")})
    assert json.loads((tmp_path / "r.json").read_text()) == {"x": None, "y": 1.5, "z": "-inf"}
    assert atomic.atomic_write_dir(tmp_path / "d", {"a": b"1", "b": b"22"}) is True
    assert sorted(os.listdir(tmp_path / "d")) == ["a", "b"] and (tmp_path / "d" / "b").read_bytes() == b"22"
    assert atomic.atomic_write_dir(tmp_path / "d", {"c": b"3"}) is False   # there already: left as it was
    assert sorted(os.listdir(tmp_path / "d")) == ["a", "b"]
    assert sorted(os.listdir(tmp_path)) == ["d", "r.json", "sub"]        # no temp file or directory left
