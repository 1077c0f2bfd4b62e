"""Error-feedback (GPTQ-style) assignment: a hand-checked case, output error vs nearest, limits, files."""
import filecmp

import numpy as np
import pytest
import torch

import wclust
from wclust.clustering.error_feedback import assign


def test_hand_checked_two_columns():
    # H = [[1, .5], [.5, 1]], codebook {0, 1}, w = [.4, .4]. Nearest rounds both to 0 (error d = [.4, .4],
    # d^T H d = .48). Error feedback rounds column 0 to 0 and moves column 1 by H^-1_01 / H^-1_00 * (w0 - q0)
    # = -(-.5) * .4 = +.2, so it becomes .6 and rounds to 1: d = [.4, -.6], d^T H d = .28 (the optimum).
    h = torch.tensor([[1.0, 0.5], [0.5, 1.0]], dtype=torch.float64)
    idx, rounded = assign(torch.tensor([[0.4, 0.4]]), h, torch.tensor([[0.0, 1.0]]), torch.zeros(1, dtype=torch.long),
                          damp=0.0)
    assert idx.tolist() == [[0, 1]] and idx.dtype == np.uint8
    assert rounded.tolist() == [[0.0, 1.0]]
    # an outlier (kept float) has no error: nothing moves, and the stored value is the (compensated) weight
    keep = torch.tensor([[False, True]])
    idx, rounded = assign(torch.tensor([[0.4, 0.4]]), h, torch.tensor([[0.0, 1.0]]), torch.zeros(1, dtype=torch.long),
                          keep=keep, damp=0.0)
    assert idx[0, 1] == 0 and torch.allclose(rounded, torch.tensor([[0.4, 0.0]]))
    # uncorrelated inputs (diagonal H): error feedback is plain nearest assignment
    idx, _ = assign(torch.tensor([[0.4, 0.6, -3.0]]), torch.eye(3, dtype=torch.float64) * 2,
                    torch.tensor([[0.0, 1.0]]), torch.zeros(1, dtype=torch.long))
    assert idx.tolist() == [[0, 1, 0]]


def _layer_and_inputs(seed, rows=40, cols=72, n=300):
    g = torch.Generator().manual_seed(seed)
    lin = torch.nn.Linear(cols, rows)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(rows, cols, generator=g) * torch.rand(cols, generator=g))
    mix = torch.randn(cols, cols, generator=g) / cols ** 0.5 + torch.eye(cols)
    x = (torch.randn(n, cols, generator=g) @ mix) * (0.2 + 2 * torch.rand(cols, generator=g)) + 0.3
    return lin, x


def _compress(lin, config, x=None):
    import copy

    m = torch.nn.Sequential(copy.deepcopy(lin))
    hs = None if x is None else {"0": x.double().T @ x.double()}
    return wclust.compress(m, config, hessians=hs, progress=False)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("opts", [dict(n_clusters=8), dict(n_clusters=16, scope="group", group_size=16),
                                  dict(n_clusters=4, outliers=0.01, channel_scale=True),
                                  dict(n_clusters=32, scope="model")])
def test_output_error_at_most_nearest_and_valid_codes(seed, opts):
    lin, x = _layer_and_inputs(seed)
    w = lin.weight.detach()
    plain = _compress(lin, wclust.ClusterConfig(**opts, min_size=0))
    ef = _compress(lin, wclust.ClusterConfig(**opts, min_size=0, error_feedback=True), x)
    out_err = lambda m: float((x @ (w - m[0].dequantize()).T).norm())   # noqa: E731
    assert out_err(ef) <= out_err(plain)
    k = opts["n_clusters"]
    c = ef[0]
    idx = c.unpacked_indices().to(torch.int64)
    assert int(idx.max()) < k
    # the codebooks are the same as plain assignment's: only the indices differ
    assert torch.equal(c.codebook, plain[0].codebook)
    rows_per_group = c.group_size
    for g in range(c.codebook.shape[0]):
        assert idx[g * rows_per_group:(g + 1) * rows_per_group].unique().numel() <= k
    if c.outlier_index is not None:
        assert c.outlier_index.numel() == plain[0].outlier_index.numel()
        assert torch.equal(c.outlier_index, plain[0].outlier_index)
    assert c.bias is not None and torch.equal(c.bias, lin.bias)


def test_config_field_validation_and_header(tmp_path):
    with pytest.raises(ValueError, match="error_feedback"):
        wclust.ClusterConfig(16, error_feedback="yes")
    assert "error_feedback" not in wclust.ClusterConfig(16).to_dict()      # old files and sweep keys unchanged
    cfg = wclust.ClusterConfig(16, error_feedback=True)
    assert wclust.ClusterConfig.from_dict(cfg.to_dict()) == cfg
    lin, x = _layer_and_inputs(0)
    with pytest.raises(ValueError, match="hessians"):
        _compress(lin, cfg)
    with pytest.raises(ValueError, match="does not match"):
        wclust.compress(torch.nn.Sequential(lin), cfg, hessians={"0": torch.eye(5, dtype=torch.float64)},
                        progress=False)


def test_save_load_round_trip_bit_identical(tmp_path):
    lin, x = _layer_and_inputs(1)
    m = _compress(lin, wclust.ClusterConfig(16, scope="group", group_size=16, outliers=0.01, channel_scale=True,
                                            min_size=0, error_feedback=True), x)
    p = tmp_path / "ef.wclust"
    wclust.save(m, p)
    assert wclust.read_header(p)["config"]["error_feedback"] is True
    loaded = wclust.load(p, model=torch.nn.Sequential(torch.nn.Linear(72, 40)))
    assert torch.equal(loaded[0].dequantize(), m[0].dequantize())
    with torch.no_grad():
        assert torch.equal(loaded(x), m(x))
    wclust.save(loaded, tmp_path / "again.wclust")
    assert filecmp.cmp(p, tmp_path / "again.wclust", shallow=False)


def test_only_linears_with_a_hessian_get_error_feedback(tiny):
    import copy

    x = torch.randn(200, 48) @ torch.randn(48, 48)
    plain = wclust.compress(copy.deepcopy(tiny), wclust.ClusterConfig(16, min_size=64), progress=False)
    ef = wclust.compress(copy.deepcopy(tiny), wclust.ClusterConfig(16, min_size=64, error_feedback=True),
                         hessians={"fc1": x.double().T @ x.double()}, progress=False)
    for name in ("embed", "patch", "fc2"):           # embedding, conv, and a Linear without calibration inputs
        assert torch.equal(getattr(ef, name).indices, getattr(plain, name).indices), name
    assert not torch.equal(ef.fc1.indices, plain.fc1.indices)


def test_sweep_with_error_feedback_computes_hessians_once(tmp_path, monkeypatch):
    import wclust.accuracy.fisher as fisher
    from wclust.accuracy.sweeps import sweep
    from wclust.accuracy.tasks import get_task

    from tests.helpers_eval import tiny_dinov2

    calls = []
    real = fisher.input_hessians
    monkeypatch.setattr(fisher, "input_hessians", lambda *a, **k: calls.append(1) or real(*a, **k))
    res = sweep(tiny_dinov2(), get_task("digits", n_train=120, n_test=100), [4, 8], ["layer"], str(tmp_path),
                options={"error_feedback": True}, image_size=16, fisher_examples=8, progress=False)
    assert len(calls) == 1
    assert [r["config"]["error_feedback"] for r in res["rows"][1:]] == [True, True]
    assert res["options"] == {"error_feedback": True}
