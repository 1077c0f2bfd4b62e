import subprocess
import sys


def _run(*args):
    return subprocess.run([sys.executable, "-m", "wclust", *args], capture_output=True, text=True, timeout=120)


def test_bad_sources_give_one_line_and_exit_2(tmp_path):
    for args in (["compress", "zoo:nope", "-o", str(tmp_path / "x.wclust")],
                 ["compress", "nothing-here", "-o", str(tmp_path / "x.wclust")],
                 ["compress", "zoo:minilm", "-o", "/nonexistent-dir/x.wclust"],
                 ["info", str(tmp_path / "missing.wclust")]):
        r = _run(*args)
        assert r.returncode == 2, (args, r.stderr)
        assert "Traceback" not in r.stderr
        assert r.stderr.strip().startswith("wclust: error:")
        assert len(r.stderr.strip().splitlines()) == 1


def test_bad_k_refused(tmp_path):
    r = _run("compress", "zoo:minilm", "-k", "1", "-o", str(tmp_path / "x.wclust"))
    assert r.returncode == 2 and "2..256" in r.stderr
