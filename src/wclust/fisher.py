"""Diagonal Fisher information of every clusterable weight, for Fisher-weighted k-means.

F_i = mean over calibration examples of (d loss / d w_i)^2, where the loss is the task's
cross-entropy through the frozen probe (or the model's own head), computed one example at a time
(the empirical Fisher needs per-example gradients, not the square of a batch gradient) on at most
64 examples of the task's train split. ``compress(model, ClusterConfig(weighting="fisher"),
sample_weights=fisher_weights(...))`` then weights each weight's squared error by its F_i.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .errors import WclustError

MAX_EXAMPLES = 64


def _weighted_modules(model: nn.Module) -> dict[str, nn.Parameter]:
    out, seen = {}, set()
    for fqn, m in model.named_modules():
        w = getattr(m, "weight", None)
        if isinstance(m, (nn.Linear, nn.Embedding, nn.Conv1d, nn.Conv2d, nn.Conv3d)) and isinstance(w, nn.Parameter):
            out[fqn] = w
            seen.add(id(w))
    return out


def fisher_weights(model: nn.Module, evaluator, n_examples: int = MAX_EXAMPLES, floor: float = 1e-3) -> dict:
    """{module name: tensor shaped like its weight} of squared per-example gradients (mean over examples).

    ``evaluator`` is an ``evaluate.Evaluator`` (its encoder, probe and the task's train split are used).
    A small ``floor`` (relative to each tensor's mean Fisher) keeps weights with zero gradient in play.
    """
    if not 1 <= n_examples <= MAX_EXAMPLES:
        raise WclustError(f"Fisher calibration uses 1..{MAX_EXAMPLES} examples, got {n_examples}")
    task = evaluator.task
    if task.fidelity:
        raise WclustError("Fisher weighting needs a labelled task (not fidelity)")
    train = task.split("train")
    if len(train) == 0:
        raise WclustError(f"task {task.name}: no train split for Fisher calibration")
    idx = torch.linspace(0, len(train) - 1, min(n_examples, len(train))).round().long().unique()
    calib = train.take(idx.numpy())
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
    Pass as ``sample_weights`` with ``weighting="fisher"`` (any per-weight importance works there)."""
    train = evaluator.task.split("train")
    idx = torch.linspace(0, len(train) - 1, min(n_examples, len(train))).round().long().unique()
    calib = train.take(idx.numpy())
    sums, counts, hooks = {}, {}, []
    for fqn, m in model.named_modules():
        if isinstance(m, nn.Linear):
            def hook(mod, args, fqn=fqn):
                x = args[0].detach().to(torch.float32).reshape(-1, args[0].shape[-1])
                sums[fqn] = sums.get(fqn, 0) + x.pow(2).sum(0)
                counts[fqn] = counts.get(fqn, 0) + x.shape[0]
            hooks.append(m.register_forward_pre_hook(hook))
    try:
        with torch.inference_mode():
            for s in range(0, len(calib), 16):
                part = calib.take(range(s, min(s + 16, len(calib))))
                evaluator.encoder.forward(model, evaluator.encoder.prepare(part.inputs))
    finally:
        for h in hooks:
            h.remove()
    out = {}
    for fqn, s in sums.items():
        w = model.get_submodule(fqn).weight
        e = s / counts[fqn]
        out[fqn] = (e + 1e-3 * e.mean()).expand_as(w).contiguous()
    return out
