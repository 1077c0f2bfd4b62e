"""The architecture a .wclust file describes: rebuilt from its header's ``source`` (an HF config
dict and class, or a timm model name) with fresh weights, so a file loads without the original
checkpoint. Sources (``sources/models.py``) record that description when they load a model.
"""
from __future__ import annotations

import contextlib
import importlib
import threading

import torch
from torch import nn

from ..errors import FormatError, WclustError


def need_package(name: str, extra: str):
    try:
        return importlib.import_module(name)
    except ImportError as e:
        raise WclustError(f"this source needs the Python package {name!r} ({e}); "
                          f"install it with: pip install 'wclust[{extra}]'") from None


def hf_source_dict(model) -> dict:
    return {"type": "hf", "class": type(model).__name__, "config": model.config.to_dict()}


def build_from_source(src: dict | None) -> nn.Module:
    """The architecture described by a saved source, with freshly initialised weights."""
    if not isinstance(src, dict):
        raise FormatError("source: the file does not describe its architecture; pass model=<skeleton> to load()")
    kind = src.get("type")
    if kind == "hf":
        transformers = need_package("transformers", "hf")
        cls_name, cfg = src.get("class"), src.get("config")
        if not isinstance(cls_name, str) or not isinstance(cfg, dict) or not isinstance(cfg.get("model_type"), str):
            raise FormatError("source: an hf source needs 'class' and a 'config' with 'model_type'")
        cls = getattr(transformers, cls_name, None)
        if not (isinstance(cls, type) and issubclass(cls, transformers.PreTrainedModel)):
            raise FormatError(f"source.class: {cls_name!r} is not a transformers model class")
        cfg = dict(cfg)
        try:
            config = transformers.AutoConfig.for_model(cfg.pop("model_type"), **cfg)
        except (ValueError, KeyError, TypeError) as e:
            raise FormatError(f"source.config: {e}") from None
        model = cls(config)
        model.wclust_source = src
        return model.eval()
    if kind == "timm":
        name = src.get("name")
        if not isinstance(name, str):
            raise FormatError("source.name: a timm source needs a model name")
        timm = need_package("timm", "timm")
        model = timm.create_model(name, pretrained=False)
        model.wclust_source = src
        return model.eval()
    raise FormatError(f"source.type: unknown {kind!r} (expected 'hf' or 'timm')")


_meta_params = threading.local()   # .depth > 0: this thread is inside parameters_on_meta
_patch_lock = threading.Lock()
_patch_users = 0
_original_register = nn.Module.register_parameter


def _register_parameter(self, name, param):
    if getattr(_meta_params, "depth", 0) and type(param) is nn.Parameter and not param.is_meta:
        param = nn.Parameter(param.detach().to("meta"), requires_grad=param.requires_grad)
    _original_register(self, name, param)


@contextlib.contextmanager
def parameters_on_meta():
    """Inside this block every ``nn.Parameter`` a module registers in this thread lives on the meta
    device (no memory: its initialisation is skipped), while buffers are computed for real. A
    clustered file's loader builds the architecture this way, then gives real storage only to the
    parameters the file fills (``materialize``): the float weights it replaces by indices never
    exist. ``nn.Module.register_parameter`` is swapped while any thread is inside; other threads'
    modules are built as usual."""
    global _patch_users
    with _patch_lock:
        if _patch_users == 0:
            nn.Module.register_parameter = _register_parameter
        _patch_users += 1
    _meta_params.depth = getattr(_meta_params, "depth", 0) + 1
    try:
        yield
    finally:
        _meta_params.depth -= 1
        with _patch_lock:
            _patch_users -= 1
            if _patch_users == 0:
                nn.Module.register_parameter = _original_register


def materialize(model: nn.Module, filled: set[str]) -> bool:
    """Give every meta parameter of ``model`` real (uninitialised) CPU storage, keeping shared
    parameters shared, provided each has a name in ``filled`` (so loading those names overwrites
    every byte). False, and ``model`` untouched, when some meta tensor could not be filled: a meta
    buffer or plain tensor attribute (computed from a parameter while it was on the meta device), or
    a parameter the file does not hold."""
    if any(b.is_meta for b in model.buffers()):
        return False
    if any(isinstance(v, torch.Tensor) and not isinstance(v, nn.Parameter) and v.is_meta
           for m in model.modules() for v in vars(m).values()):
        return False
    uses: dict[int, tuple[nn.Parameter, list]] = {}
    for prefix, module in model.named_modules(remove_duplicate=False):
        for name, p in module._parameters.items():
            if p is not None and p.is_meta:
                uses.setdefault(id(p), (p, []))[1].append((module, name, f"{prefix}.{name}" if prefix else name))
    if any(not any(fqn in filled for _, _, fqn in where) for _, where in uses.values()):
        return False
    for p, where in uses.values():
        real = nn.Parameter(torch.empty(p.shape, dtype=p.dtype), requires_grad=p.requires_grad)
        for module, name, _ in where:
            module._parameters[name] = real
    return True
