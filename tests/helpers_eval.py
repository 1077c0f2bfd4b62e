"""Small real-architecture models for the evaluation tests (random init, no download)."""
import torch


def tiny_dinov2(seed: int = 0):
    import transformers

    torch.manual_seed(seed)
    cfg = transformers.Dinov2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, mlp_ratio=2,
                                    patch_size=4, image_size=16)
    model = transformers.Dinov2Model(cfg).eval()
    from wclust.sources.models import hf_source_dict
    model.wclust_source = hf_source_dict(model)
    return model


def save_tiny(directory) -> str:
    m = tiny_dinov2()
    m.save_pretrained(str(directory))
    return str(directory)


def digits_evaluator(n_train: int, n_test: int):
    """(tiny_dinov2(), an Evaluator on scikit-learn digits at 16 px), built on one thread."""
    from wclust.accuracy.evaluate import Evaluator
    from wclust.accuracy.tasks import get_task

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = tiny_dinov2()
        ev = Evaluator(model, get_task("digits", n_train=n_train, n_test=n_test), image_size=16, progress=False,
                       cache=False)
    finally:
        torch.set_num_threads(n)
    return model, ev


def inputs_seen(ev, model, layer, inputs) -> torch.Tensor:
    """Every input row ``layer`` receives while ``model`` encodes ``inputs`` (2-D, float64)."""
    seen = []
    h = layer.register_forward_pre_hook(lambda m, a: seen.append(a[0].reshape(-1, a[0].shape[-1]).double()))
    try:
        with torch.no_grad():
            ev.encoder.forward(model, ev.encoder.prepare(inputs))
    finally:
        h.remove()
    return torch.cat(seen)
