"""CLI user errors: one line on stderr, exit code 2, no traceback (``--debug`` shows it)."""
import os
import subprocess
import sys

import pytest
import torch

import wclust
from wclust.cli import main
from tests.conftest import TinyTransformer, save_tiny_bert


def _cli(capsys, *args):
    try:
        rc = main([str(a) for a in args])
    except SystemExit as e:   # argparse
        rc = e.code
    return rc, capsys.readouterr().err


def _one_line_error(rc, err, *expect):
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("wclust: error: "), err
    assert "Traceback" not in err
    for e in expect:
        assert e in err, err


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    save_tiny_bert(d / "hf")
    m = wclust.compress(TinyTransformer(), wclust.ClusterConfig(16, min_size=64), progress=False)
    wclust.save(m, d / "tiny.wclust")
    blob = bytearray((d / "tiny.wclust").read_bytes())
    blob[-3] ^= 0x10
    (d / "corrupt.wclust").write_bytes(bytes(blob))
    from safetensors.torch import save_file
    save_file({"w": torch.zeros(3)}, str(d / "plain.safetensors"))
    return d


def test_missing_source(capsys, tmp_path):
    out = tmp_path / "x.wclust"
    _one_line_error(*_cli(capsys, "compress", tmp_path / "no-such-model", "-o", out), "cannot read model source")
    _one_line_error(*_cli(capsys, "compress", f"hf:{tmp_path}/nope", "-o", out), "no such directory")
    _one_line_error(*_cli(capsys, "compress", "-o", out), "required: source")
    _one_line_error(*_cli(capsys, "info"), "required: file")
    assert not out.exists()


def test_unknown_zoo_name_and_source_kind(capsys, tmp_path):
    _one_line_error(*_cli(capsys, "compress", "zoo:nope", "-o", tmp_path / "x.wclust"), "unknown zoo model 'nope'")
    _one_line_error(*_cli(capsys, "compress", "s3:bucket/model", "-o", tmp_path / "x.wclust"), "unknown source kind")


def test_unknown_task(capsys, files, tmp_path):
    _one_line_error(*_cli(capsys, "eval", f"hf:{files / 'hf'}", "--task", "nope"), "unknown task 'nope'")
    _one_line_error(*_cli(capsys, "sweep", f"hf:{files / 'hf'}", "--task", "nope", "-o", tmp_path / "s"),
                    "unknown task 'nope'")


def test_unwritable_output(capsys, tmp_path, files):
    src = f"hf:{files / 'hf'}"
    for out, msg in ((tmp_path / "no" / "dir" / "x.wclust", "does not exist"),
                     (tmp_path, "should end with .wclust"),
                     ("/proc/x.wclust", "not writable"),
                     (tmp_path / "x.safetensors", "should end with .wclust")):
        _one_line_error(*_cli(capsys, "compress", src, "-o", out), msg)
    (tmp_path / "d.wclust").mkdir()
    _one_line_error(*_cli(capsys, "compress", src, "-o", tmp_path / "d.wclust"), "is a directory")
    if os.geteuid() != 0:  # root may write anywhere
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        _one_line_error(*_cli(capsys, "compress", src, "-o", ro / "x.wclust"), "not writable")


def test_wclust_where_a_model_is_expected_and_vice_versa(capsys, files, tmp_path):
    _one_line_error(*_cli(capsys, "compress", files / "tiny.wclust", "-o", tmp_path / "y.wclust"),
                    "already a .wclust file")
    _one_line_error(*_cli(capsys, "eval", files / "tiny.wclust", "-k", "16", "--task", "digits"),
                    "already clustered")
    _one_line_error(*_cli(capsys, "info", "zoo:minilm"), "is a model source")
    _one_line_error(*_cli(capsys, "info", files / "plain.safetensors"), "not a .wclust file")
    _one_line_error(*_cli(capsys, "info", files / "hf"), "is a directory")
    _one_line_error(*_cli(capsys, "info", files / "missing.wclust"), "no such file")


def test_bad_file_and_bad_options(capsys, files, tmp_path):
    assert main(["info", str(files / "corrupt.wclust"), "--quick"]) == 0   # header only: data not read
    assert "format_version" in capsys.readouterr().out
    _one_line_error(*_cli(capsys, "info", files / "corrupt.wclust"), "checksum mismatch")
    _one_line_error(*_cli(capsys, "eval", files / "corrupt.wclust", "--task", "digits", "--reference",
                          f"hf:{files / 'hf'}"), "checksum mismatch")
    src = f"hf:{files / 'hf'}"
    _one_line_error(*_cli(capsys, "compress", src, "-k", "1", "-o", tmp_path / "x.wclust"), "2..256")
    _one_line_error(*_cli(capsys, "compress", src, "-k", "300", "-o", tmp_path / "x.wclust"), "2..256")
    _one_line_error(*_cli(capsys, "compress", src, "-k", "64", "--bits", "5", "-o", tmp_path / "x.wclust"), "bits")
    _one_line_error(*_cli(capsys, "compress", src, "-k", "sixty", "-o", tmp_path / "x.wclust"), "invalid int")
    _one_line_error(*_cli(capsys, "frobnicate"), "invalid choice")
    assert not (tmp_path / "x.wclust").exists()


def _run(*args):
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.run([sys.executable, "-m", "wclust", *map(str, args)], capture_output=True, text=True,
                          timeout=300, env=env)


def test_real_process_one_line_and_debug_traceback(files):
    r = _run("compress", f"hf:{files / 'hf'}", "-k", "8", "-o", files / "no" / "x.wclust")
    _one_line_error(r.returncode, r.stderr, "does not exist")
    r = _run("info", files / "plain.safetensors", "--debug")
    assert r.returncode != 0 and "Traceback" in r.stderr and "FormatError" in r.stderr, r.stderr


def test_nothing_to_cluster_is_one_error_line(capsys, files, tmp_path):
    _one_line_error(*_cli(capsys, "compress", f"hf:{files / 'hf'}", "--exclude", "*", "-o", tmp_path / "x.wclust"),
                    "no layer matched")
    assert not (tmp_path / "x.wclust").exists()


def test_task_checked_before_the_model_is_loaded(capsys, tmp_path):
    # the source does not exist: the task error comes first, so nothing was loaded
    _one_line_error(*_cli(capsys, "eval", "zoo:nope", "--task", "nope"), "unknown task 'nope'")
    _one_line_error(*_cli(capsys, "sweep", "zoo:nope", "--task", "fidelity:nope", "-o", tmp_path / "s"),
                    "unknown task 'nope'")
    _one_line_error(*_cli(capsys, "eval", "zoo:nope", "--task", f"imagenet:{tmp_path}/none"), "no such directory")
    _one_line_error(*_cli(capsys, "compress", "zoo:nope", "-o", tmp_path / "x.wclust", "--error-feedback",
                          "--task", "nope"), "unknown task 'nope'")


def test_calibration_options_need_a_task_and_k(capsys, files, tmp_path):
    src = f"hf:{files / 'hf'}"
    out = tmp_path / "x.wclust"
    _one_line_error(*_cli(capsys, "compress", src, "--error-feedback", "-o", out), "need --task")
    _one_line_error(*_cli(capsys, "compress", src, "--weighting", "activation", "-o", out), "need --task")
    _one_line_error(*_cli(capsys, "compress", src, "--weighting", "fisher", "--task", "digits", "-o", out),
                    "--weighting activation")
    _one_line_error(*_cli(capsys, "eval", files / "tiny.wclust", "--task", "digits", "--error-feedback"),
                    "already clustered")
    _one_line_error(*_cli(capsys, "eval", src, "--task", "digits", "--error-feedback"), "need -k")
    _one_line_error(*_cli(capsys, "eval", src, "--task", "digits", "--weighting", "hessian"), "invalid choice")
    assert not out.exists()


def test_compress_with_error_feedback_and_activation_weighting(capsys, tmp_path):
    from tests.helpers_eval import save_tiny

    src = "hf:" + save_tiny(tmp_path / "tiny")
    out = tmp_path / "ef.wclust"
    rc = main(["compress", src, "-k", "16", "--error-feedback", "--weighting", "activation", "--task", "digits",
               "--image-size", "16", "-o", str(out), "--json"])
    assert rc == 0, capsys.readouterr().err
    cfg = wclust.read_header(out)["config"]
    assert cfg["error_feedback"] is True and cfg["weighting"] == "activation"
    wclust.load(out)


def test_clustering_options_are_never_silently_dropped(capsys, files, tmp_path):
    src = f"hf:{files / 'hf'}"
    for opt in (["--scope", "model"], ["--outliers", "0.01"], ["--bits", "8"], ["--exclude", "pooler*"]):
        _one_line_error(*_cli(capsys, "eval", src, "--task", "digits", *opt), "need -k", opt[0])
        _one_line_error(*_cli(capsys, "eval", files / "tiny.wclust", "--task", "digits", *opt), "already clustered")
    _one_line_error(*_cli(capsys, "compress", src, "-k", "8", "--group-size", "8", "-o", tmp_path / "x.wclust"),
                    "--scope group")
    _one_line_error(*_cli(capsys, "bench", files / "tiny.wclust", "--scope", "model"), "as stored")


@pytest.mark.parametrize("cmd", [["bench", "arch:vit-s16", "--batch", "0"], ["bench", "arch:vit-s16", "--repeats", "0"],
                                 ["bench", "arch:vit-s16", "--threads", "0"], ["profile", "arch:vit-s16", "--threads", "-3"],
                                 ["profile", "arch:vit-s16", "--batch", "0"], ["estimate", "arch:vit-s16", "--threads", "0"],
                                 ["eval", "zoo:minilm", "--task", "digits", "--batch-size", "0"]])
def test_counts_below_one_are_refused_before_loading(capsys, cmd):
    _one_line_error(*_cli(capsys, *cmd), "must be >= 1")


def test_estimate_bits_must_hold_every_k(capsys):
    _one_line_error(*_cli(capsys, "estimate", "arch:vit-s16", "-k", "16", "--bits", "2"), "4..8")
    _one_line_error(*_cli(capsys, "estimate", "arch:vit-s16", "-k", "16", "256", "--bits", "4"), "8..8")


def test_exclude_adds_to_the_defaults(capsys, files):
    import argparse

    from wclust.clustering.config import DEFAULT_EXCLUDE
    from wclust.commands.common import add_cluster_options, config_from_args, warn_unmatched_patterns

    p = argparse.ArgumentParser()
    add_cluster_options(p)
    assert config_from_args(p.parse_args([])).exclude == list(DEFAULT_EXCLUDE)
    assert config_from_args(p.parse_args(["--exclude", "pooler*"])).exclude == [*DEFAULT_EXCLUDE, "pooler*"]
    assert config_from_args(p.parse_args(["--no-default-exclude"])).exclude == []
    assert config_from_args(p.parse_args(["--no-default-exclude", "--exclude", "a*"])).exclude == ["a*"]
    assert config_from_args(p.parse_args(["--include", "*.fc*"])).include == ["*.fc*"]
    warn_unmatched_patterns(torch.nn.Sequential(torch.nn.Linear(2, 2)),
                            p.parse_args(["--exclude", "0", "nothing*", "--include", "nope"]))
    err = capsys.readouterr().err
    assert "--exclude 'nothing*' matches no module" in err and "'0'" not in err
    assert "--include 'nope' matches no module" in err


@pytest.mark.parametrize("cmd", [["estimate", "zoo:nope", "-o"], ["profile", "zoo:nope", "-o"],
                                 ["study", "zoo:nope", "--quick", "-o"]])
def test_a_failed_command_leaves_no_empty_output_directory(capsys, tmp_path, cmd):
    for out in (tmp_path / "new" / "deeper", tmp_path / "mine"):
        if out.name == "mine":
            out.mkdir()                    # there before the run: kept
        rc, err = _cli(capsys, *cmd, out)  # (study logs its steps on stderr before the error)
        assert rc == 2 and "wclust: error: unknown zoo model" in err, err
    assert not (tmp_path / "new").exists() and (tmp_path / "mine").is_dir()
