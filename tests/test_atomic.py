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
from tests.test_fuzz import fingerprint

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
