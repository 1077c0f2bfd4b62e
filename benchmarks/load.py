"""Peak memory and time of wclust.load: each load in a fresh process, the lean build (parameters on
the meta device) beside the float build it replaced, interleaved; prints JSON.

    python benchmarks/load.py FILE.wclust [FILE ...] [--rounds 2]

Per file and build: load seconds, resident MiB added once loaded, and the peak above the start
(VmHWM), with the ratios float / lean taken side by side in one run.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

CHILD = r"""
import json, sys, time
import torch, transformers, wclust, wclust.kernels.cpu
from wclust.clustering import architecture
header = wclust.read_header(sys.argv[1])
cls = (header.get("source") or {}).get("class")
if cls:
    getattr(transformers, cls)            # import the model's code before the baseline
if sys.argv[2] == "float":
    architecture.materialize = lambda model, filled: False
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
start_rss, start_peak = status("VmRSS"), status("VmHWM")
t = time.perf_counter()
model = wclust.load(sys.argv[1])
dt = time.perf_counter() - t
print(json.dumps({"load_s": dt, "resident_mib": status("VmRSS") - start_rss,
                  "peak_mib": status("VmHWM") - max(start_rss, start_peak)}))
"""


def one(path: str, build: str) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, path, build], capture_output=True, text=True, timeout=900)
    if out.returncode:
        raise SystemExit(f"{path} ({build} build): {out.stderr.strip().splitlines()[-1]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("files", nargs="+")
    p.add_argument("--rounds", type=int, default=2)
    args = p.parse_args(argv)
    if not sys.platform.startswith("linux"):
        raise SystemExit("reads /proc/self/status: Linux only")
    results = {"rounds": args.rounds, "files": {}}
    samples = {(f, b): [] for f in args.files for b in ("lean", "float")}
    for r in range(args.rounds):
        for f in args.files:
            for b in (("lean", "float") if r % 2 == 0 else ("float", "lean")):
                samples[(f, b)].append(one(f, b))
                print(f"round {r + 1}: {os.path.basename(f)} {b}: {samples[(f, b)][-1]}", file=sys.stderr)
    for f in args.files:
        row = {}
        for b in ("lean", "float"):
            s = samples[(f, b)]
            row[b] = {k: round(statistics.median(x[k] for x in s), 3) for k in s[0]}
            row[b]["peak_mib_range"] = [round(min(x["peak_mib"] for x in s), 1), round(max(x["peak_mib"] for x in s), 1)]
        row["peak_float_over_lean"] = round(row["float"]["peak_mib"] / row["lean"]["peak_mib"], 2)
        results["files"][os.path.basename(f)] = row
    json.dump(results, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
