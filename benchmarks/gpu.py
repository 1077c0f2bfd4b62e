"""Triton LUT kernels on an NVIDIA GPU, in one call: correctness vs the reference, then timings.

    python benchmarks/gpu.py [--quick] [--out FILE] [--budget-s S]   # prints JSON; exits 1 if a check fails
    python benchmarks/gpu.py --compile-only [--arch 90]   # no GPU needed: every variant, built for sm_<arch>
    PYTHONPATH=src python3 benchmarks/gpu.py    # where wclust is not installed

The harness lives in ``wclust.performance.gpu`` (its docstring says what is checked and timed).
"""
import sys

from wclust.performance.gpu import main

if __name__ == "__main__":
    sys.exit(main())
