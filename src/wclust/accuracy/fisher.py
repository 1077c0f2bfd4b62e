"""Calibration statistics for clustering: diagonal Fisher information, activation energies, input Hessians.

F_i = mean over calibration examples of (d loss / d w_i)^2, where the loss is the task's
cross-entropy through the frozen probe (or the model's own head), computed one example at a time
(the empirical Fisher needs per-example gradients, not the square of a batch gradient) on at most
64 examples of the task's train split. ``compress(model, ClusterConfig(weighting="fisher"),
sample_weights=fisher_weights(...))`` then weights each weight's squared error by its F_i.
``activation_weights`` (E[x_j^2] per input feature) needs no labels; ``input_hessians`` (X^T X of each
Linear's input) drives error-feedback assignment (``wclust.clustering.error_feedback``). All three read the same
calibration examples (``calibration_split``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..clustering.compress import kind_classes
from ..clustering.gpt2_conv1d import as_out_in, linear_classes, matmul_weight
from ..errors import WclustError

MAX_EXAMPLES = 64


def _weighted_modules(model: nn.Module) -> dict[str, nn.Parameter]:
    """The weights of every module kind ``wclust.compress`` can cluster."""
    kinds = tuple(c for k in ("linear", "conv", "embedding") for c in kind_classes(k))
    out = {}
    for fqn, m in model.named_modules():
        w = getattr(m, "weight", None)
        if isinstance(m, kinds) and isinstance(w, nn.Parameter):
            out[fqn] = w
    return out


def calibration_split(evaluator, n_examples: int = MAX_EXAMPLES):
    """At most ``n_examples`` examples of the task's train split, evenly spaced (every statistic here reads these)."""
    if not 1 <= n_examples <= MAX_EXAMPLES:
        raise WclustError(f"calibration uses 1..{MAX_EXAMPLES} examples, got {n_examples}")
    train = evaluator.task.split("train")
    if len(train) == 0:
        raise WclustError(f"task {evaluator.task.name}: no train split for calibration")
    idx = torch.linspace(0, len(train) - 1, min(n_examples, len(train))).round().long().unique()
    return train.take(idx.numpy())


def input_hessians(model: nn.Module, evaluator, n_examples: int = MAX_EXAMPLES) -> dict:
    """{Linear name: H = sum over calibration tokens of x x^T (float64, in_features^2)} of its input.

    ``evaluator`` needs ``.task`` and ``.encoder`` (an ``evaluate.Evaluator`` or ``evaluate.Calibration``).
    Texts run one at a time, so padding tokens never enter H; images in batches of 16."""
    hess = {}

    def add(fqn, x):
        x = x.to(torch.float64)
        if fqn not in hess:
            hess[fqn] = torch.zeros(x.shape[1], x.shape[1], dtype=torch.float64)
        hess[fqn].addmm_(x.T, x)

    step = 1 if evaluator.encoder.modality == "text" else 16
    _each_linear_input(model, evaluator, calibration_split(evaluator, n_examples), step, add)
    return hess


def _each_linear_input(model: nn.Module, evaluator, calib, step: int, fn) -> None:
    """Encode ``calib`` ``step`` examples at a time, calling ``fn(name, x)`` with the input rows
    (2-D, detached) that every nn.Linear (and transformers Conv1D) of ``model`` receives."""
    def hook(fqn):
        return lambda mod, args: fn(fqn, args[0].detach().reshape(-1, args[0].shape[-1]))

    hooks = [m.register_forward_pre_hook(hook(fqn)) for fqn, m in model.named_modules()
             if isinstance(m, linear_classes())]
    try:
        with torch.inference_mode():
            for s in range(0, len(calib), step):
                part = calib.take(range(s, min(s + step, len(calib))))
                evaluator.encoder.forward(model, evaluator.encoder.prepare(part.inputs))
    finally:
        for h in hooks:
            h.remove()


def fisher_weights(model: nn.Module, evaluator, n_examples: int = MAX_EXAMPLES, floor: float = 1e-3) -> dict:
    """{module name: tensor shaped like its weight} of squared per-example gradients (mean over examples).

    ``evaluator`` is an ``evaluate.Evaluator`` (its encoder, probe and the task's train split are used).
    A small ``floor`` (relative to each tensor's mean Fisher) keeps weights with zero gradient in play.
    """
    if evaluator.task.fidelity:
        raise WclustError("Fisher weighting needs a labelled task (not fidelity)")
    calib = calibration_split(evaluator, n_examples)
    params = _weighted_modules(model)
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    for p in model.parameters():
        p.requires_grad_(False)
    for p in params.values():
        p.requires_grad_(True)
    acc = {fqn: torch.zeros_like(p, dtype=torch.float32) for fqn, p in params.items()}
    was_training = model.training
    model.eval()
    try:
        for i in range(len(calib)):
            one = calib.take([i])
            batch = evaluator.encoder.prepare(one.inputs)
            with torch.enable_grad():
                out = evaluator.encoder.forward(model, batch)
                logits = evaluator.probe(out) if evaluator.probe is not None else out
                loss = F.cross_entropy(logits, torch.from_numpy(one.labels))
                grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
            for (fqn, _), g in zip(params.items(), grads):
                if g is not None:
                    acc[fqn] += g.detach().to(torch.float32).pow(2)
    finally:
        for n, p in model.named_parameters():
            p.requires_grad_(flags[n])
        model.train(was_training)
    out = {}
    for fqn, a in acc.items():
        a = a / len(calib)
        mean = float(a.mean())
        out[fqn] = a + floor * mean if mean > 0 else torch.ones_like(a)
    return out


def activation_weights(model: nn.Module, evaluator, n_examples: int = MAX_EXAMPLES) -> dict:
    """{Linear name: E[x_j^2] of its input feature j, broadcast over rows}: the diagonal of the layer-wise
    Hessian of the output error (sum_j dW_ij^2 E[x_j^2]), from calibration examples of the train split.
    Pass as ``sample_weights`` with ``weighting="activation"``."""
    sums, counts = {}, {}

    def add(fqn, x):
        x = x.to(torch.float32)
        sums[fqn] = sums.get(fqn, 0) + x.pow(2).sum(0)
        counts[fqn] = counts.get(fqn, 0) + x.shape[0]

    _each_linear_input(model, evaluator, calibration_split(evaluator, n_examples), 16, add)
    out = {}
    for fqn, s in sums.items():
        m = model.get_submodule(fqn)
        e = s / counts[fqn]
        # per input feature, over every output row; shaped like the module's weight (a Conv1D's is (in, out))
        out[fqn] = as_out_in(m, (e + 1e-3 * e.mean()).expand_as(matmul_weight(m))).contiguous()
    return out
