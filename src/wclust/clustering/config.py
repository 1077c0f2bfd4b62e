"""ClusterConfig: what to cluster and how."""
from __future__ import annotations

import dataclasses
import fnmatch
from dataclasses import dataclass, field

from .packing import bits_for

SCOPES = ("model", "layer", "group")
# Position and patch embeddings stay float unless asked (pass exclude=[] to cluster them too).
# The patch embedding is ~1% of a ViT's weights but the most sensitive tensor in it: on DINOv2
# ViT-S/14 + Fashion-MNIST, one whole-model k=64 codebook that included it lost 50.6 top-1 points;
# leaving it float lost 0.4.
DEFAULT_EXCLUDE = ("*position_embedding*", "*pos_embed*", "*patch_embed*")
WEIGHTINGS = ("uniform", "fisher", "activation")


@dataclass
class ClusterConfig:
    """Settings of one clustering.

    n_clusters: codebook length, 2..256.
    scope: "model" (one codebook for every clustered tensor), "layer" (one per tensor) or
        "group" (one per block of ``group_size`` output channels; the last block may be smaller).
    bits: stored index width; default ceil(log2(n_clusters)); at least that, at most 8.
    include / exclude: fnmatch patterns over module names (``fqn``); exclude wins; exclude=None
        means DEFAULT_EXCLUDE (position and patch embeddings), recorded as such in to_dict().
    min_size: tensors with fewer elements stay float.
    types: module kinds to cluster: "linear", "conv", "embedding".
    weighting: "uniform", "fisher" (k-means weighted by squared gradients) or "activation" (weighted by
        E[x^2] of each weight's input feature); both need sample weights passed to ``compress``.
    outliers: fraction of each tensor's largest-magnitude weights kept exactly in float (sparse).
    channel_scale: divide each output channel by its RMS before clustering and keep the scale in
        float (one shared codebook of normalized values, per-channel scales).
    error_feedback: assign the indices of Linear weights column by column, pushing each column's
        rounding error onto the columns not yet assigned through the inverse of X^T X of calibration
        inputs (GPTQ-style; needs ``hessians`` passed to ``compress``, see ``wclust.clustering.error_feedback``).
    """

    n_clusters: int = 256
    scope: str = "layer"
    bits: int | None = None
    include: list[str] | None = None
    exclude: list[str] | None = None
    min_size: int = 1024
    types: tuple[str, ...] = ("linear", "conv", "embedding")
    group_size: int = 64
    weighting: str = "uniform"
    outliers: float = 0.0
    channel_scale: bool = False
    error_feedback: bool = False
    threads: int | None = field(default=None, compare=False)

    def __post_init__(self):
        if isinstance(self.n_clusters, bool) or not isinstance(self.n_clusters, int):
            raise ValueError(f"n_clusters must be an int, got {self.n_clusters!r}")
        if not 2 <= self.n_clusters <= 256:
            raise ValueError(f"n_clusters must be in 2..256, got {self.n_clusters}")
        if self.scope not in SCOPES:
            raise ValueError(f"scope must be one of {', '.join(SCOPES)}, got {self.scope!r}")
        need = bits_for(self.n_clusters)
        if self.bits is None:
            self.bits = need
        if isinstance(self.bits, bool) or not isinstance(self.bits, int) or not need <= self.bits <= 8:
            raise ValueError(f"bits must be an int in {need}..8 for {self.n_clusters} clusters, got {self.bits!r}")
        if isinstance(self.group_size, bool) or not isinstance(self.group_size, int) or self.group_size < 1:
            raise ValueError(f"group_size must be a positive int, got {self.group_size!r}")
        if self.weighting not in WEIGHTINGS:
            raise ValueError(f"weighting must be one of {', '.join(WEIGHTINGS)}, got {self.weighting!r}")
        if isinstance(self.outliers, bool) or not isinstance(self.outliers, (int, float)) \
                or not 0.0 <= float(self.outliers) < 0.5:
            raise ValueError(f"outliers must be a fraction in [0, 0.5), got {self.outliers!r}")
        self.outliers = float(self.outliers)
        if isinstance(self.min_size, bool) or not isinstance(self.min_size, int) or self.min_size < 0:
            raise ValueError(f"min_size must be a non-negative int, got {self.min_size!r}")
        if isinstance(self.types, str) or not isinstance(self.types, (list, tuple)) \
                or not all(isinstance(t, str) for t in self.types):
            raise ValueError(f"types must be a list of module kinds, got {self.types!r}")
        self.types = tuple(self.types)
        bad = set(self.types) - {"linear", "conv", "embedding"}
        if bad:
            raise ValueError(f"unknown module types {sorted(bad)}; use linear, conv, embedding")
        if self.exclude is None:
            self.exclude = list(DEFAULT_EXCLUDE)
        for name in ("include", "exclude"):
            val = getattr(self, name)
            if isinstance(val, str):
                setattr(self, name, [val])
            elif val is not None and (not isinstance(val, (list, tuple)) or not all(isinstance(p, str) for p in val)):
                raise ValueError(f"{name} must be a list of fnmatch patterns, got {val!r}")
        if not isinstance(self.channel_scale, bool):
            raise ValueError(f"channel_scale must be true or false, got {self.channel_scale!r}")
        if not isinstance(self.error_feedback, bool):
            raise ValueError(f"error_feedback must be true or false, got {self.error_feedback!r}")
        if self.threads is not None and (isinstance(self.threads, bool) or not isinstance(self.threads, int)
                                         or self.threads < 1):
            raise ValueError(f"threads must be a positive int or None, got {self.threads!r}")

    def selects(self, fqn: str) -> bool:
        exclude = DEFAULT_EXCLUDE if self.exclude is None else self.exclude
        if any(fnmatch.fnmatchcase(fqn, p) for p in exclude):
            return False
        if self.include is not None:
            return any(fnmatch.fnmatchcase(fqn, p) for p in self.include)
        return True

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.pop("threads")
        d["types"] = list(self.types)
        if not self.error_feedback:   # added later: left out at its default, so older files and sweep keys match
            d.pop("error_feedback")
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ClusterConfig":
        if not isinstance(d, dict) or not all(isinstance(k, str) for k in d):
            raise ValueError("config must be a JSON object")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown config field(s): {sorted(unknown)}")
        return cls(**d)
