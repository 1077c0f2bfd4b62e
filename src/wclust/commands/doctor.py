"""``wclust doctor``: this machine as the kernels see it, and which kernel runs each case here."""
from __future__ import annotations

import json


def register(sub) -> None:
    p = sub.add_parser("doctor", help="this CPU's features and which kernel runs each case here (why a model "
                                      "is fast or slow on this machine)")
    p.add_argument("--rows", type=int, nargs="+", default=[1, 4, 8, 16, 197], help="rows of x to show")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def report(rows=(1, 4, 8, 16, 197)) -> dict:
    import torch

    from .. import _native
    from ..kernels import choice, cpu, machine

    lib = cpu.native()
    base = cpu.case(1, 8, 64)
    return {
        "cpu": machine.cpu(),
        "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
        "c_library": None if lib is None else lib._name.rsplit("/", 1)[-1],
        "c_library_functions": len(_native.header_functions()) if lib is not None else 0,
        "isa": base.isa, "amx_bf16": base.amx, "onednn_packed_bf16": base.onednn_packed,
        "openmp_runtime": None if cpu.openmp_runtime is None else cpu.openmp_runtime.rsplit("/", 1)[-1],
        "rules": list(choice.RULES),
        "table": choice.table(base, rows=tuple(rows)),
    }


def run(args) -> int:
    from ..kernels import choice

    r = report(args.rows)
    if args.json:
        print(json.dumps(r, indent=1))
        return 0
    c = r["cpu"]
    print(f"CPU       {c['model']} ({c['arch']}, {c['cores']} cores)")
    print(f"features  {' '.join(c['features']) or '(none of those the kernels use)'}")
    print(f"torch     {r['torch']}, {r['torch_threads']} threads; OpenMP team: {r['openmp_runtime'] or 'own pthread pool'}")
    if r["c_library"] is None:
        print("C library NOT LOADED: every clustered layer runs the torch reference (20-30x slower); "
              "rebuild with `pip install -e .`")
    else:
        print(f"C library {r['c_library']}: ISA level {r['isa']}; AMX bf16 {'yes' if r['amx_bf16'] else 'no'}; "
              f"oneDNN packed bf16 {'yes' if r['onednn_packed_bf16'] else 'no'}")
    print("\nkernel per case (rows of x across):")
    rows = sorted({t["rows"] for t in r["table"]})
    head = f"{'compute':8} {'bits':>4} {'k':>4}  " + "  ".join(f"{m:>17}" for m in rows)
    print(head)
    by = {}
    for t in r["table"]:
        by.setdefault((t["compute"], t["index_bits"], t["k"]), {})[t["rows"]] = t["kernel"]
    for (comp, bits, k), kern in by.items():
        print(f"{comp:8} {bits:>4} {k:>4}  " + "  ".join(f"{kern[m]:>17}" for m in rows))
    print("\nkernels:")
    for name in sorted({t["kernel"] for t in r["table"]}):
        print(f"  {name:18} {choice.KERNELS[name]}")
    return 0
