"""The package's shape: an import graph without cycles (function-local imports counted) whose floors
hold, and no source file over 400 lines but the few listed below with the reason."""
import importlib.util
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAX_LINES = 400
# Files allowed over MAX_LINES, each with why it is not split (yet).
OVER_LIMIT = {
    # the ctypes tables, the plan cache and the few-rows fast path of the C kernels: the plan cache
    # (plan, one_off_plan, _fast_entry, fast_gemv, ~150 lines) is the part to move to kernels/plans.py next
    "src/wclust/kernels/cpu.py": 520,
    # the AVX-512 GEMM kernels (fp32 and bf16 tiles of one blocking scheme); csrc/ is split by ISA on its own branch
    "src/wclust/csrc/x86/avx512_gemm.c": 420,
    # the platform specs (GPUs and, since the ARM64 work, the boards' CPUs from llvm-mca rates) and the
    # host calibration; the calibration (measure_host .. host_spec, ~120 lines) is the part to move out next
    "src/wclust/performance/platforms.py": 440,
}


def _graph_module():
    spec = importlib.util.spec_from_file_location("import_graph", os.path.join(ROOT, "scripts", "import_graph.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_import_graph_has_no_cycles_and_floors_hold(capsys):
    r = _graph_module().check(os.path.join(ROOT, "src"))
    with capsys.disabled():
        print(f"\nimport graph: {r['modules']} modules, {r['edges']} edges, {len(r['cycles'])} cycles")
    assert r["modules"] > 40 and r["edges"] > 100      # the graph was read at all
    assert r["cycles"] == []
    assert r["violations"] == []


def _write(root, rel, text):
    path = os.path.join(root, *rel.split("/"))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def test_graph_counts_imports_inside_functions_strings_and_relative_levels(tmp_path):
    g = _graph_module()
    src = str(tmp_path)
    _write(src, "wclust/__init__.py", "from .clustering.io import load\n")
    _write(src, "wclust/errors.py", "")
    _write(src, "wclust/clustering/__init__.py", "")
    _write(src, "wclust/clustering/io.py", "from ..errors import *\n\ndef f():\n    from . import kmeans\n")
    _write(src, "wclust/clustering/kmeans.py", "def g():\n    if True:\n        from .io import f\n")
    _write(src, "wclust/sources/__init__.py", "")
    _write(src, "wclust/sources/models.py",
           "ZOO = {'a': 'wclust.clustering.kmeans:fit'}\nimport importlib\n"
           "def h(n):\n    return importlib.import_module(f'wclust.clustering.{n}')\n")
    graph = g.graph(src)
    assert graph == {
        "wclust": {"wclust.clustering.io"},
        "wclust.clustering": set(),
        "wclust.clustering.io": {"wclust.errors", "wclust.clustering.kmeans"},
        "wclust.clustering.kmeans": {"wclust.clustering.io"},
        "wclust.errors": set(),
        "wclust.sources": set(),
        "wclust.sources.models": {"wclust.clustering.kmeans", "wclust.clustering.io"},
    }
    assert g.cycles(graph) == [["wclust.clustering.io", "wclust.clustering.kmeans"]]
    graph["wclust.clustering.kmeans"] = {"wclust.sources.models"}      # a lower floor reaching up
    assert g.floor_violations(graph) == [
        "wclust.clustering.kmeans (clustering) imports wclust.sources.models (sources), a higher floor"]
    graph["wclust.sources.models"] = {"wclust.accuracy.x"}
    graph["wclust.accuracy.x"] = {"wclust.performance.y"}                 # siblings on one floor
    assert any("two groups" in v for v in g.floor_violations(graph))


def _source_files():
    for d, dirs, files in os.walk(os.path.join(ROOT, "src")):
        dirs[:] = [x for x in dirs if x != "__pycache__"]
        for f in files:
            if f.endswith((".py", ".c", ".h")):
                yield os.path.relpath(os.path.join(d, f), ROOT).replace(os.sep, "/")


def test_no_source_file_over_400_lines_but_the_listed_ones():
    sizes = {}
    for rel in _source_files():
        with open(os.path.join(ROOT, rel), encoding="utf-8", errors="replace") as f:
            sizes[rel] = sum(1 for _ in f)
    over = {rel: n for rel, n in sizes.items() if n > MAX_LINES and rel not in OVER_LIMIT}
    assert over == {}, f"split these files or list them in OVER_LIMIT with the reason: {over}"
    grown = {rel: sizes[rel] for rel, cap in OVER_LIMIT.items() if sizes.get(rel, 0) > cap}
    assert grown == {}, f"these listed files grew past the lines allowed them in OVER_LIMIT: {grown}"


@pytest.mark.parametrize("name", ["wclust.accuracy.evaluate", "wclust.accuracy.sweeps", "wclust.sources.zoo",
                                  "wclust.sources.dinov2"])
def test_former_cycle_members_import_cleanly_alone(name):
    import subprocess
    import sys
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "src"))
    r = subprocess.run([sys.executable, "-c", f"import {name}"], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
