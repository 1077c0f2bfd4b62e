"""Ratios of several `wclust bench ... -o DIR` runs side by side; prints JSON.

    python benchmarks/bench_summary.py DIR [DIR ...] [--against int8_dynamic]

For each run: the CPU, k, the dense fp32 median, and per variant the speed-up over dense fp32
(ratio of medians, paired, minima) and the ratio of medians against ``--against``; then, per
variant and k, the range over the runs.
"""
from __future__ import annotations

import argparse
import json
import os


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dirs", nargs="+")
    ap.add_argument("--against", default="int8_dynamic")
    args = ap.parse_args()
    runs, ranges = [], {}
    for d in args.dirs:
        with open(os.path.join(d, "bench.json")) as f:
            r = json.load(f)
        lat, mem = r["latency"], r.get("memory", {})
        row = {"run": os.path.basename(os.path.normpath(d)), "cpu": r.get("cpu"), "k": r["n_clusters"],
               "threads": r["threads"], "repeats": r["repeats"], "fp32_median_ms": round(lat["fp32"]["median_ms"], 1),
               "variants": {}}
        for name, v in lat.items():
            if name == "fp32":
                continue
            vs = lat[args.against]["median_ms"] / v["median_ms"] if args.against in lat else None
            row["variants"][name] = {
                "vs_fp32": round(v["speedup_vs_fp32"], 3), "vs_fp32_paired": round(v.get("speedup_paired") or 0, 3),
                "vs_fp32_min": round(v["speedup_min"], 3), f"vs_{args.against}": None if vs is None else round(vs, 3),
                "param_vs_fp32": round(mem.get(name, {}).get("param_vs_fp32", 0), 3),
                "rss_vs_fp32": round(mem.get(name, {}).get("rss_vs_fp32", 0), 3)}
            for key, val in row["variants"][name].items():
                if isinstance(val, float) and val:
                    lo, hi = ranges.setdefault(f"k={row['k']} {name}", {}).get(key, (val, val))
                    ranges[f"k={row['k']} {name}"][key] = (min(lo, val), max(hi, val))
        runs.append(row)
    print(json.dumps({"runs": runs, "ranges": ranges}, indent=1))


if __name__ == "__main__":
    main()
