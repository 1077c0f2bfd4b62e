"""Model side of a task: preprocessing, forward to features (or logits), and the frozen linear probe.

- Vision backbones (e.g. ``Dinov2Model``): images resized to ``image_size`` (default 112 px for
  small images), grey -> 3 channels, ImageNet normalization; feature = the final CLS token
  (``pooler_output`` of Dinov2Model, else ``last_hidden_state[:, 0]``).
- Text encoders (BERT-like) and language models (GPT-2 with its head): tokenized with the model's
  tokenizer; feature = attention-masked mean of the last hidden states, L2-normalized
  (sentence-transformers' pooling).
- Classifiers (HF ``*ForImageClassification``, timm): their logits.
"""
from __future__ import annotations

import importlib
import os

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import WclustError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_SMALL_IMAGE = 112


def model_kind(model: nn.Module) -> str:
    """"text", "vision" (a backbone: probe its features) or "classifier" (has its own head)."""
    cfg = getattr(model, "config", None)
    if cfg is not None:
        if hasattr(cfg, "image_size"):
            return "classifier" if type(model).__name__.endswith("ForImageClassification") else "vision"
        if hasattr(cfg, "vocab_size"):
            return "text"
    if getattr(model, "pretrained_cfg", None) is not None or hasattr(model, "default_cfg"):
        return "classifier"      # timm
    raise WclustError(f"cannot tell how to run {type(model).__name__} on a task (not an HF or timm model)")


def model_dtype(model: nn.Module) -> torch.dtype | None:
    """The dtype of the model's first floating-point parameter (None when it has none)."""
    return next((p.dtype for p in model.parameters() if p.is_floating_point()), None)


def tokenizer_dir(model: nn.Module, hint: str | None = None) -> str:
    """Where the tokenizer of a text model lives: ``hint``, the zoo model's directory, or the source's path."""
    if hint:
        return hint
    src = getattr(model, "wclust_source", None) or {}
    if src.get("zoo") == "minilm":
        from ..sources.zoo import minilm_dir
        return minilm_dir()
    if src.get("path") and os.path.isdir(src["path"]):
        return src["path"]
    raise WclustError("this text model has no known tokenizer; pass --tokenizer DIR")


class Encoder:
    """Turns a task's raw inputs into model inputs, and model outputs into features."""

    def __init__(self, model: nn.Module, modality: str, image_size: int | None = None,
                 tokenizer: str | None = None, max_length: int = 128):
        self.kind = model_kind(model)
        self.modality = modality
        if (self.kind == "text") != (modality == "text"):
            raise WclustError(f"a {self.kind} model cannot run on {'an' if modality[0] in 'aeiou' else 'a'} "
                              f"{modality} task")
        self.max_length = max_length
        self.tokenizer = None
        self._hidden_states = False
        if self.kind == "text":
            transformers = importlib.import_module("transformers")
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(tokenizer_dir(model, tokenizer))
            if self.tokenizer.pad_token is None and self.tokenizer.eos_token is not None:
                self.tokenizer.pad_token = self.tokenizer.eos_token   # GPT-2's has none (padding is masked out)
        cfg = getattr(model, "config", None)
        native = getattr(cfg, "image_size", None) if cfg is not None else None
        native = native[0] if isinstance(native, (list, tuple)) else native
        if native is None and self.kind == "classifier":
            native = (getattr(model, "pretrained_cfg", None) or {}).get("input_size", (3, 224, 224))[-1]
        if image_size is None:
            image_size = DEFAULT_SMALL_IMAGE if modality == "image" and self.kind == "vision" else min(native or 224, 224)
        self.image_size = int(image_size)
        if self.kind == "vision":
            patch = getattr(cfg, "patch_size", 1)
            patch = patch[0] if isinstance(patch, (list, tuple)) else patch
            if self.image_size % patch:
                raise WclustError(f"image size {self.image_size} is not a multiple of the patch size {patch}")

    @property
    def settings(self) -> str:
        return f"{self.kind}|px={self.image_size}|len={self.max_length}"

    # -- inputs -------------------------------------------------------------------------------------
    def prepare(self, inputs) -> dict:
        if self.modality == "text":
            enc = self.tokenizer(list(inputs), padding=True, truncation=True, max_length=self.max_length,
                                 return_tensors="pt")
            return {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
        if self.modality == "image-files":
            x = torch.from_numpy(np.stack([_load_image(p, self.image_size) for p in inputs]))
        else:
            x = torch.from_numpy(np.ascontiguousarray(inputs))
        x = x.to(torch.float32) / 255.0
        if x.ndim == 3:
            x = x[:, None]                       # grey (N, H, W)
        elif x.shape[-1] in (1, 3):
            x = x.permute(0, 3, 1, 2)            # (N, H, W, C)
        if x.shape[-1] != self.image_size or x.shape[-2] != self.image_size:
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False,
                              antialias=True)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        mean = torch.tensor(IMAGENET_MEAN)[None, :, None, None]
        std = torch.tensor(IMAGENET_STD)[None, :, None, None]
        return {"pixel_values": ((x - mean) / std).contiguous()}

    # -- outputs ------------------------------------------------------------------------------------
    def forward(self, model: nn.Module, batch: dict) -> torch.Tensor:
        """Features (N, D) or logits (N, C) for one prepared batch (float inputs cast to the
        model's dtype: a model cast to bf16 computes in bf16 throughout)."""
        dt = model_dtype(model)
        if dt is not None and dt != torch.float32:
            batch = {k: v.to(dt) if v.is_floating_point() else v for k, v in batch.items()}
        if self.kind == "classifier" and getattr(model, "config", None) is None:
            return model(batch["pixel_values"])
        out = model(**batch, **({"output_hidden_states": True} if self._hidden_states else {}))
        if self.kind == "classifier":
            return out.logits
        if self.kind == "text":
            h = getattr(out, "last_hidden_state", None)
            if h is None:  # a language model with its head (GPT2LMHeadModel): the last hidden states
                hidden = getattr(out, "hidden_states", None)
                if hidden is None:
                    self._hidden_states = True   # asked for from the next batch on
                    hidden = model(**batch, output_hidden_states=True).hidden_states
                h = hidden[-1]
            m = batch["attention_mask"].to(h.dtype)[..., None]
            emb = (h * m).sum(1) / m.sum(1).clamp_min(1e-9)
            return F.normalize(emb, dim=-1)
        if type(model).__name__ == "Dinov2Model" and getattr(out, "pooler_output", None) is not None:
            return out.pooler_output
        return out.last_hidden_state[:, 0]


def _load_image(path: str, size: int) -> np.ndarray:
    """RGB uint8 (size, size, 3): shorter side to size/0.875, centre crop (the usual ImageNet eval)."""
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
        w, h = im.size
        short = int(round(size / 0.875))
        s = short / min(w, h)
        im = im.resize((max(size, round(w * s)), max(size, round(h * s))), Image.BICUBIC)
        w, h = im.size
        left, top = (w - size) // 2, (h - size) // 2
        return np.asarray(im.crop((left, top, left + size, top + size)), dtype=np.uint8)


def fit_probe(features: np.ndarray, labels: np.ndarray, n_classes: int, C: float = 1.0,
              max_iter: int = 2000) -> nn.Linear:
    """Multinomial logistic regression on standardized features, folded into one frozen nn.Linear."""
    from sklearn.linear_model import LogisticRegression

    x = np.asarray(features, np.float64)
    mean, std = x.mean(0), x.std(0)
    std = np.where(std > 1e-12, std, 1.0)
    clf = LogisticRegression(C=C, max_iter=max_iter)
    clf.fit((x - mean) / std, labels)
    coef = np.zeros((n_classes, x.shape[1]))
    bias = np.full(n_classes, -1e9)          # classes absent from the train split never win
    if len(clf.classes_) == 2 and clf.coef_.shape[0] == 1:
        rows = np.vstack([-clf.coef_[0] / 2, clf.coef_[0] / 2])
        icpt = np.array([-clf.intercept_[0] / 2, clf.intercept_[0] / 2])
    else:
        rows, icpt = clf.coef_, clf.intercept_
    for r, c in enumerate(clf.classes_):
        coef[int(c)] = rows[r] / std
        bias[int(c)] = icpt[r] - rows[r] @ (mean / std)
    lin = nn.Linear(x.shape[1], n_classes)
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy(coef))
        lin.bias.copy_(torch.from_numpy(bias))
    lin.requires_grad_(False)
    return lin.eval()
