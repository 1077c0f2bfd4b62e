"""torchrun with 2 CPU processes (gloo) reports exactly the numbers of one process."""
import json
import os
import signal
import socket
import subprocess
import sys

import pytest

from tests.helpers_eval import save_tiny

TIMEOUT_S = 300


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(cmd, env) -> subprocess.CompletedProcess:
    """Run in its own process group; on timeout kill the whole group (torchrun's workers too)."""
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                         start_new_session=True)
    try:
        out, err = p.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate()
        pytest.fail(f"{' '.join(cmd[:6])}... timed out after {TIMEOUT_S} s; stderr:\n{err[-3000:]}")
    return subprocess.CompletedProcess(cmd, p.returncode, out, err)


@pytest.mark.skipif(sys.platform == "win32", reason="torchrun on POSIX")
def test_two_processes_report_the_same_numbers(tmp_path):
    pytest.importorskip("torch.distributed")
    src = "hf:" + save_tiny(tmp_path / "tiny")
    args = ["eval", src, "--task", "digits", "--image-size", "16", "--n-train", "300", "--n-test", "250",
            "-k", "16", "--batch-size", "16", "--json"]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore", GLOO_SOCKET_IFNAME="lo")
    for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):   # not inherited from a parent run
        env.pop(k, None)

    def run(cmd, cache, retry_on_port_clash=False):
        e = dict(env, WCLUST_CACHE=str(tmp_path / cache))
        for attempt in range(3):
            out = _run(cmd(), e)
            clash = "address already in use" in out.stderr.lower() or "eaddrinuse" in out.stderr.lower()
            if out.returncode == 0 or not (retry_on_port_clash and clash):
                break
        assert out.returncode == 0, \
            f"exit {out.returncode}; stderr:\n{out.stderr[-3000:]}\nstdout:\n{out.stdout[-1000:]}"
        start = out.stdout.index("{")
        return json.loads(out.stdout[start:])

    one = run(lambda: [sys.executable, "-m", "wclust", *args], "c1")
    # an explicit free port on the loopback interface (static rendezvous) instead of --standalone's c10d
    # rendezvous, whose port and host name resolution were suspects in past flaky failures
    two = run(lambda: [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", "2",
                       "--master-addr", "127.0.0.1", "--master-port", str(_free_port()),
                       "-m", "wclust", *args], "c2", retry_on_port_clash=True)
    for key in ("top1", "top5", "n", "drop_top1", "bytes"):
        assert one[key] == two[key], key
    assert one["fp32"]["top1"] == two["fp32"]["top1"]
    assert one["n"] == 250
