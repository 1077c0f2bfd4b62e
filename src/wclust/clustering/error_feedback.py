"""Error-feedback (GPTQ/OPTQ-style) index assignment for Linear weights.

Plain assignment rounds every weight to its nearest codebook value independently. Error feedback
rounds the input columns of a Linear one at a time and pushes each column's rounding error onto the
columns not yet rounded, weighted by the inverse of H = X^T X (X: calibration inputs of the layer),
so the errors cancel in the layer's output X W^T instead of adding up (Frantar et al., "GPTQ",
2022, in its Cholesky form with lazy block updates). The codebook itself is fitted as usual; only
the choice of indices changes, so files keep their format.

``wclust.accuracy.fisher.input_hessians(model, evaluator)`` collects H for every Linear from the calibration
examples of a task's train split; ``compress(..., hessians=H)`` with ``ClusterConfig(error_feedback=True)``
then calls ``assign`` for each Linear it finds in H.
"""
from __future__ import annotations

import torch
from ..errors import WclustError

DAMP = 0.01      # added to H's diagonal, relative to its mean
BLOCK = 128      # columns updated eagerly; the rest lazily, one matrix product per block


def _upper_inverse_cholesky(h: torch.Tensor, damp: float) -> torch.Tensor:
    """Upper Cholesky factor of (H + damp * mean(diag H) * I)^-1 (float64); dead inputs get H_jj = 1."""
    h = h.to(torch.float64).clone()
    diag = h.diagonal()
    dead = diag <= 0
    diag[dead] = 1.0
    diag += damp * float(diag.mean())
    for _ in range(4):
        chol, info = torch.linalg.cholesky_ex(h)
        if int(info) == 0:
            break
        h.diagonal().add_(damp * float(diag.mean()))     # not positive definite: damp more
    else:
        raise WclustError("error feedback: the calibration Hessian is not positive definite")
    return torch.linalg.cholesky(torch.cholesky_inverse(chol), upper=True)


def assign(values: torch.Tensor, hessian: torch.Tensor, codebooks: torch.Tensor, row_group: torch.Tensor,
           keep: torch.Tensor | None = None, damp: float = DAMP, block: int = BLOCK):
    """Indices for ``values`` (rows, cols) with error feedback over its columns.

    codebooks: (n_groups, K) sorted ascending, the values as stored; row_group: (rows,) group of each row;
    keep: (rows, cols) bool, False where a weight is an outlier kept in float (its error is zero).
    Returns (uint8 indices (rows, cols), float32 (rows, cols) the values as rounded: the codebook value
    where ``keep`` is True, the error-compensated value to store where it is False (an outlier)."""
    rows, cols = values.shape
    if tuple(hessian.shape) != (cols, cols):
        raise ValueError(f"Hessian shape {tuple(hessian.shape)} does not match {cols} input features")
    u = _upper_inverse_cholesky(hessian, damp).to(torch.float32)
    cb = codebooks.to(torch.float32)[row_group]                                   # (rows, K)
    c64 = cb.to(torch.float64)
    bounds = ((c64[:, 1:] + c64[:, :-1]) / 2).to(torch.float32).contiguous()     # as kmeans.Assigner
    w = values.to(torch.float32).clone()
    idx = torch.empty(rows, cols, dtype=torch.int64)
    for a in range(0, cols, block):
        b = min(a + block, cols)
        w1, u1 = w[:, a:b], u[a:b, a:b]
        err1 = torch.zeros(rows, b - a)
        for i in range(b - a):
            col = w1[:, i].contiguous()
            k = torch.searchsorted(bounds, col[:, None], side="left")[:, 0]
            q = cb.gather(1, k[:, None])[:, 0]
            if keep is not None:
                q = torch.where(keep[:, a + i], q, col)
            idx[:, a + i] = k
            e = (col - q) / u1[i, i]
            w1[:, i:] -= e[:, None] * u1[i, i:][None, :]
            err1[:, i] = e
        w[:, b:] -= err1 @ u[a:b, b:]
    return idx.to(torch.uint8).numpy(), w
