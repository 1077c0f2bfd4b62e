"""Fuzz the .wclust loader: N mutated real files (the mutation engine of tests/fuzzing.py).

    .venv/bin/python benchmarks/fuzz.py [--cases 12000] [--seed 0] [--minilm 200]

Base files (tests/fuzzing.py's BASE_FILES): two TinyTransformer clusterings (4-bit groups +
outliers + channel scales; 3-bit model scope with aliases), a tiny BERT and a tiny GPT-2 (Conv1D
layers clustered as Linears) that load from their headers' source, and (when installed) zoo:minilm. Each case is judged as in the tests: FormatError, or a clean load that equals the
original bit for bit (meaning unchanged) / equals what a re-signed hostile file says. Anything
else - another exception, a wrong model, a case over --hang-cpu-s seconds of CPU time or
--hang-wall-s seconds of wall time (a shared machine slows wall time down) - counts as "other".
Prints one JSON line: {"cases", "format_error", "clean", "other", ...}; "clean" splits into
"clean_identical" (the original model) and "clean_resigned_as_written" (hostile, re-signed).
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import random
import signal
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import wclust  # noqa: E402
from tests import fuzzing as F  # noqa: E402


class Hang(Exception):
    pass


def _alarm(signum, frame):
    raise Hang()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", type=int, default=12000, help="cases over the tiny base files")
    ap.add_argument("--minilm", type=int, default=200, help="extra cases on zoo:minilm (0: none)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--hang-cpu-s", type=float, default=30.0)
    ap.add_argument("--hang-wall-s", type=float, default=600.0)
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    d = Path(tempfile.mkdtemp(prefix="wclust-fuzz-"))
    bases = []
    for i, (name, make) in enumerate(F.BASE_FILES):
        p = d / f"base{i}.wclust"
        skeleton = make(p)
        bases.append((name, p.read_bytes(), skeleton,
                      F.fingerprint(wclust.load(p, model=skeleton()))))
    plan = [(i % len(bases), args.seed * 10**7 + i) for i in range(args.cases)]
    if args.minilm:
        try:
            from wclust.sources.models import load_source

            m = load_source("zoo:minilm")
            wclust.compress(m, wclust.ClusterConfig(16, scope="model"), progress=False)
            p = d / "minilm.wclust"
            wclust.save(m, p)
            bases.append(("minilm", p.read_bytes(), lambda: None, F.fingerprint(wclust.load(p))))
            plan += [(len(bases) - 1, args.seed * 10**7 + 5 * 10**6 + i) for i in range(args.minilm)]
        except wclust.WclustError as e:
            print(f"zoo:minilm not available ({e}); skipped", file=sys.stderr)
    counts = collections.Counter()
    per_base = collections.defaultdict(collections.Counter)
    resigned = 0
    slowest = 0.0
    signal.signal(signal.SIGALRM, _alarm)
    signal.signal(signal.SIGPROF, _alarm)
    t0 = time.perf_counter()
    for b, seed in plan:
        name, blob, skeleton, reference = bases[b]
        t = time.process_time()
        try:
            mutated, resign = F.mutate(blob, F.RandomDraw(random.Random(seed)))
            resigned += resign
            signal.setitimer(signal.ITIMER_REAL, args.hang_wall_s)
            signal.setitimer(signal.ITIMER_PROF, args.hang_cpu_s)
            try:
                outcome = F.check_case(mutated, resign, d / "case.wclust", skeleton, reference)
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.setitimer(signal.ITIMER_PROF, 0)
        except Hang:
            outcome = "other"
            print(f"HANG base={name} seed={seed}", file=sys.stderr)
        except BaseException as e:  # noqa: BLE001 - every other outcome is a finding
            if isinstance(e, KeyboardInterrupt):
                raise
            outcome = "other"
            print(f"OTHER base={name} seed={seed}: {type(e).__name__}: {e}", file=sys.stderr)
            traceback.print_exc(limit=3)
        slowest = max(slowest, time.process_time() - t)
        counts[outcome] += 1
        per_base[name][outcome] += 1
    for f in d.iterdir():
        f.unlink()
    os.rmdir(d)
    print(json.dumps({"cases": len(plan), "format_error": counts["format_error"],
                      "clean": counts["clean"] + counts["clean_resigned"], "other": counts["other"],
                      "clean_identical": counts["clean"], "clean_resigned_as_written": counts["clean_resigned"],
                      "resigned": resigned,
                      "per_base": {k: dict(v) for k, v in per_base.items()},
                      "seconds": round(time.perf_counter() - t0, 1), "slowest_case_cpu_s": round(slowest, 2)}))
    return 0 if counts["other"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
