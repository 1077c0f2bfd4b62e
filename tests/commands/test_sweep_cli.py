"""wclust sweep: refused runs leave no output directory; the table prints "-" for missing values, sizes in MiB."""
import wclust.accuracy.sweeps as sweeps
from wclust.cli import main
from tests.conftest import save_tiny_bert


def _cli(capsys, *args):
    rc = main([str(a) for a in args])
    return rc, capsys.readouterr()


def test_bad_k_leaves_no_output_directory(capsys, tmp_path):
    rc, out = _cli(capsys, "sweep", "zoo:nope", "--task", "digits", "-k", "16", "300", "-o", tmp_path / "sw")
    assert rc == 2 and "2..256" in out.err
    assert not (tmp_path / "sw").exists()


def test_refused_source_removes_only_the_empty_directories_it_made(capsys, tmp_path):
    src = f"hf:{save_tiny_bert(tmp_path / 'hf')}"
    rc, out = _cli(capsys, "sweep", src, "--task", "digits", "-o", tmp_path / "sw" / "a" / "b")   # text model
    assert rc == 2 and "text model" in out.err
    assert not (tmp_path / "sw").exists()
    (tmp_path / "mine").mkdir()            # already there: kept
    rc, out = _cli(capsys, "sweep", src, "--task", "digits", "-o", tmp_path / "mine")
    assert rc == 2 and (tmp_path / "mine").is_dir()


def test_table_dashes_for_missing_values_and_mib(capsys, tmp_path, monkeypatch):
    rows = [{"scope": "fp32", "k": None, "label": "fp32", "top1": 90.0, "top1_ci95": 1.0, "n": 100,
             "bytes": 3 * 2**20, "sqnr_db": None},
            {"scope": "layer", "k": 4, "label": "layer k=4", "top1": 80.0, "top1_ci95": 1.5, "drop_top1": 10.0,
             "n": 100, "bytes": 2**20, "sqnr_db": 12.5}]
    monkeypatch.setattr(sweeps, "sweep", lambda *a, **k: {"rows": rows, "seconds": 1.0})
    rc, out = _cli(capsys, "sweep", "zoo:nope", "--task", "digits", "-k", "4", "--scope", "layer",
                   "-o", tmp_path / "sw")
    assert rc == 0, out.err
    lines = out.out.splitlines()
    assert "nan" not in out.out
    assert lines[0].split() == ["row", "top1", "top5", "+-", "drop", "MiB", "sqnr", "dB"]
    assert lines[1].split() == ["fp32", "90.00", "-", "1.00", "0.00", "3.00", "-"]
    assert lines[2].split() == ["layer", "k=4", "80.00", "-", "1.50", "10.00", "1.00", "12.50"]
