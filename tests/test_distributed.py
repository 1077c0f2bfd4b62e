"""torchrun with 2 CPU processes (gloo) reports exactly the numbers of one process."""
import json
import os
import subprocess
import sys

import pytest

from .helpers_eval import save_tiny


@pytest.mark.skipif(sys.platform == "win32", reason="torchrun on POSIX")
def test_two_processes_report_the_same_numbers(tmp_path):
    pytest.importorskip("torch.distributed")
    src = "hf:" + save_tiny(tmp_path / "tiny")
    args = ["eval", src, "--task", "digits", "--image-size", "16", "--n-train", "300", "--n-test", "250",
            "-k", "16", "--batch-size", "16", "--json"]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")

    def run(cmd, cache):
        e = dict(env, XDG_CACHE_HOME=str(tmp_path / cache))
        out = subprocess.run(cmd, capture_output=True, text=True, env=e, timeout=600)
        assert out.returncode == 0, out.stderr[-3000:]
        start = out.stdout.index("{")
        return json.loads(out.stdout[start:])

    one = run([sys.executable, "-m", "wclust", *args], "c1")
    two = run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "-m", "wclust", *args], "c2")
    for key in ("top1", "top5", "n", "drop_top1", "bytes"):
        assert one[key] == two[key], key
    assert one["fp32"]["top1"] == two["fp32"]["top1"]
    assert one["n"] == 250
