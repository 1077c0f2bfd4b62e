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
