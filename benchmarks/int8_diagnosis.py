"""Where int8 compute loses accuracy on dinov2-s / Fashion-MNIST: the same per-layer clustered model
with fp32 compute, with only its codebooks rounded to int8, with only its activations quantized
(7-bit asymmetric per token: the int8 numeric; 8-bit symmetric per token: the alternative), top-1
and the paired difference to fp32 compute (5,000 train / 2,000 test). Prints JSON.

    python benchmarks/int8_diagnosis.py [K]
"""
import copy
import json
import os
import sys

# this folder holds a kernels.py, which would shadow the `kernels` package transformers looks for
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import torch  # noqa: E402

import wclust  # noqa: E402
from wclust.accuracy.evaluate import Evaluator, cluster_copy  # noqa: E402
from wclust.accuracy.tasks import get_task, paired_interval95  # noqa: E402
from wclust.sources.models import load_source  # noqa: E402
from wclust.kernels import int8  # noqa: E402
from wclust.clustering.modules import ClusteredLinear  # noqa: E402
torch.set_num_threads(1)
ref = load_source("zoo:dinov2-s").eval()
task = get_task("fashion-mnist", modality="image", n_train=5000, n_test=2000)
ev = Evaluator(ref, task, progress=False)
k = int(sys.argv[1]) if len(sys.argv) > 1 else 64
model = cluster_copy(ref, wclust.ClusterConfig(n_clusters=k, scope="layer"), ev, progress=False)
def correct(m):
    logits = ev.logits(ev.features(m, "test"))
    return (logits.argmax(-1) == torch.from_numpy(ev.test.labels)).numpy()
out = {}
c_f = correct(model); out["fp32"] = float(c_f.mean())
# (c) codebook rounded to int8, fp32 compute
mc = copy.deepcopy(model)
for m in mc.modules():
    if isinstance(m, ClusteredLinear):
        q, s = int8.quantize_codebook(m.codebook)
        m.codebook.copy_(q.float() * s[:, None])
c = correct(mc); out["int8_codebook_only"] = (float(c.mean()), float(c.mean() - c_f.mean()), paired_interval95(c, c_f))
# (d) activations fake-quantized 7-bit per token, fp32 codebook
def fq(bits_max, sym):
    def hook(mod, args):
        x = args[0]; x2 = x.reshape(-1, x.shape[-1])
        if sym:
            s = x2.abs().amax(1, keepdim=True).clamp(min=1e-12) / bits_max
            return (torch.round(x2 / s).clamp(-bits_max, bits_max) * s).reshape(x.shape)
        q, s, z = int8.quantize_activations(x2)
        return ((q.float() - z[:, None].float()) * s[:, None]).reshape(x.shape)
    return hook
for name, bm, sym in [("act_u7_asym_only", 127, False), ("act_s8_sym_only", 127, True)]:
    md = copy.deepcopy(model)
    for m in md.modules():
        if isinstance(m, ClusteredLinear):
            m.register_forward_pre_hook(fq(bm, sym))
    c = correct(md); out[name] = (float(c.mean()), float(c.mean() - c_f.mean()), paired_interval95(c, c_f))
    print(name, out[name], flush=True)
print(json.dumps(out))
