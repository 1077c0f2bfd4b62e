import pytest
import torch
import torch.nn.functional as F

import wclust
from wclust.errors import WclustError
from wclust.accuracy.evaluate import Evaluator, cluster_copy
from wclust.accuracy.fisher import fisher_weights
from wclust.accuracy.tasks import get_task

from tests.helpers_eval import digits_evaluator, inputs_seen


@pytest.fixture(scope="module")
def setup():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield digits_evaluator(n_train=300, n_test=200)
    torch.set_num_threads(n)


def test_fisher_is_mean_of_per_example_squared_gradients(setup):
    model, ev = setup
    fw = fisher_weights(model, ev, n_examples=4, floor=0.0)
    assert set(fw) >= {"encoder.layer.0.mlp.fc2", "encoder.layer.1.attention.q_proj" if hasattr(
        model.encoder.layer[1].attention, "q_proj") else "encoder.layer.1.attention.attention.query"}
    name = "encoder.layer.1.mlp.fc1"
    w = model.get_submodule(name).weight
    train = ev.task.split("train")
    idx = torch.linspace(0, len(train) - 1, 4).round().long().unique().numpy()
    manual = torch.zeros_like(w)
    for i in idx:
        one = train.take([i])
        batch = ev.encoder.prepare(one.inputs)
        loss = F.cross_entropy(ev.probe(ev.encoder.forward(model, batch)), torch.from_numpy(one.labels))
        (g,) = torch.autograd.grad(loss, [w])
        manual += g.pow(2)
    torch.testing.assert_close(fw[name], manual / len(idx), rtol=1e-4, atol=1e-12)
    assert all(v.shape == model.get_submodule(k).weight.shape and (v >= 0).all() for k, v in fw.items())
    assert all(p.requires_grad for p in model.parameters())          # left as it was


def test_fisher_clustering_runs_and_limits(setup):
    model, ev = setup
    c = cluster_copy(model, wclust.ClusterConfig(16, weighting="fisher"), ev, fisher_examples=8)
    assert c.wclust_info["config"]["weighting"] == "fisher"
    assert ev.score(c)["n"] == 200
    with pytest.raises(WclustError, match="1..64"):
        fisher_weights(model, ev, n_examples=65)
    fid = Evaluator(model, get_task("fidelity:digits", n_test=50), image_size=16, progress=False, cache=False)
    with pytest.raises(WclustError, match="labelled"):
        fisher_weights(model, fid, n_examples=4)


def test_activation_weights_are_mean_squared_inputs(setup):
    from wclust.accuracy.fisher import activation_weights

    model, ev = setup
    aw = activation_weights(model, ev, n_examples=8)
    name = "encoder.layer.0.mlp.fc2"
    lin = model.get_submodule(name)
    train = ev.task.split("train")
    idx = torch.linspace(0, len(train) - 1, 8).round().long().unique().numpy()
    e = inputs_seen(ev, model, lin, train.take(idx).inputs).pow(2).mean(0).float()
    torch.testing.assert_close(aw[name][0], e + 1e-3 * e.mean(), rtol=1e-4, atol=1e-7)
    assert aw[name].shape == lin.weight.shape


def test_input_hessians_are_sums_of_input_outer_products(setup):
    from wclust.accuracy.fisher import calibration_split, input_hessians

    model, ev = setup
    hs = input_hessians(model, ev, n_examples=6)
    name = "encoder.layer.1.mlp.fc2"
    x = inputs_seen(ev, model, model.get_submodule(name), calibration_split(ev, 6).inputs)
    assert x.shape[0] == 6 * 17                                        # 6 images, 16 patches + CLS
    torch.testing.assert_close(hs[name], x.T @ x, rtol=1e-6, atol=1e-6)
    assert all(v.dtype == torch.float64 and v.shape == (m.in_features,) * 2
               for k, v in hs.items() for m in [model.get_submodule(k)])


def test_error_feedback_and_activation_weighting_through_cluster_copy(setup):
    model, ev = setup
    c = cluster_copy(model, wclust.ClusterConfig(8, weighting="activation", error_feedback=True), ev,
                     fisher_examples=8)
    assert c.wclust_info["config"]["error_feedback"] is True
    assert c.wclust_info["config"]["weighting"] == "activation"
    plain = cluster_copy(model, wclust.ClusterConfig(8, weighting="activation"), ev, fisher_examples=8)
    name = "encoder.layer.0.mlp.fc1"
    assert torch.equal(c.get_submodule(name).codebook, plain.get_submodule(name).codebook)
    assert not torch.equal(c.get_submodule(name).indices, plain.get_submodule(name).indices)
    assert ev.score(c)["n"] == 200
    with pytest.raises(WclustError, match="task"):
        cluster_copy(model, wclust.ClusterConfig(8, error_feedback=True))
