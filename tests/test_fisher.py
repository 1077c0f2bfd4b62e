import pytest
import torch
import torch.nn.functional as F

import wclust
from wclust.errors import WclustError
from wclust.evaluate import Evaluator, cluster_copy
from wclust.fisher import fisher_weights
from wclust.tasks import get_task

from .helpers_eval import tiny_dinov2


@pytest.fixture(scope="module")
def setup():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    model = tiny_dinov2()
    ev = Evaluator(model, get_task("digits", n_train=300, n_test=200), image_size=16, progress=False, cache=False)
    yield model, ev
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
    from wclust.fisher import activation_weights

    model, ev = setup
    aw = activation_weights(model, ev, n_examples=8)
    name = "encoder.layer.0.mlp.fc2"
    lin = model.get_submodule(name)
    seen = []
    h = lin.register_forward_pre_hook(lambda m, a: seen.append(a[0].reshape(-1, a[0].shape[-1])))
    train = ev.task.split("train")
    idx = torch.linspace(0, len(train) - 1, 8).round().long().unique().numpy()
    with torch.no_grad():
        ev.encoder.forward(model, ev.encoder.prepare(train.take(idx).inputs))
    h.remove()
    e = torch.cat(seen).pow(2).mean(0)
    torch.testing.assert_close(aw[name][0], e + 1e-3 * e.mean(), rtol=1e-4, atol=1e-7)
    assert aw[name].shape == lin.weight.shape
