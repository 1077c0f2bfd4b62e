"""Throughput of the ARM64 kernels on paper: llvm-mca on their inner loops, per core model.

Nothing here can time an ARM core, so this compiles benchmarks/csrc/arm_mca_loops.c (the kernels'
inner loops, one block of 16 weights and one token per iteration, built from the same helpers as
src/wclust/csrc/arm64/) with aarch64-linux-gnu-gcc for each core, cuts out each loop body between
its LLVM-MCA markers, and runs llvm-mca on it: cycles per iteration = cycles per 16 weights (the
4-bit loops do two blocks an iteration, as the kernels: halved), in
the steady state llvm-mca simulates (every load an L1 hit: the DRAM side is the bandwidth below).

From those rates, one token of ViT-B/16 (84.9M weights in its 48 Linear matrices) on a board's
CPU cores (all cores, rows split evenly, no other cost):
    compute = weights / 16 * cycles / clock / cores,   memory = weights * bytes per weight / DRAM bandwidth
    time = max(compute, memory)
against dense fp32 (4 bytes a weight, 4 fmla per 16 weights) on the same cores. DRAM bandwidths:
wclust.performance.platforms (the boards' datasheets); core counts and clocks: below, with sources.

Usage: python benchmarks/arm_mca.py [--out benchmarks/results/arm_mca.json]
       python benchmarks/arm_mca.py --markdown benchmarks/results/arm_mca.json   (the tables of docs/arm64.md)
Needs aarch64-linux-gnu-gcc (Debian gcc-aarch64-linux-gnu) and llvm-mca (Debian llvm; a newer
llvm-mca-NN is preferred: LLVM 16 has a Neoverse N2 model, LLVM 14 none for an ARMv8.2 big core).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CSRC = os.path.join(ROOT, "src", "wclust", "csrc")
LOOPS = os.path.join(HERE, "csrc", "arm_mca_loops.c")
CC = "aarch64-linux-gnu-gcc"
ITERATIONS = 500
VIT_B16_WEIGHTS = 12 * (768 * 2304 + 768 * 768 + 768 * 3072 + 3072 * 768)  # 84,934,656 in 48 matrices

# llvm-mca core models and the gcc flags the loops are compiled with for them
MODELS = {
    "cortex-a57": {"cflags": ["-mcpu=cortex-a57"], "dotprod": False,
                   "for": "Jetson TX2's Cortex-A57 cluster; also Raspberry Pi 4's Cortex-A72 class"},
    "neoverse-n2": {"cflags": ["-mcpu=neoverse-n2"], "dotprod": True,
                    "for": "nearest modelled core for Cortex-A78 / Neoverse N1 (Jetson Orin, Graviton2) and "
                           "Carmel (Jetson AGX Xavier): LLVM models those with the Cortex-A57 model or not at "
                           "all (see llvm_models); N2 has the same two 128-bit ASIMD pipes as N1 and A78"},
    "apple-m1": {"cflags": ["-march=armv8.4-a+dotprod"], "dotprod": True, "for": "Apple M1 (a Mac)"},
}
# which llvm-mca model the cores the issue names get (filled in by probing)
PROBE = ("cortex-a57", "cortex-a78", "neoverse-n1", "carmel", "neoverse-n2", "apple-m1")

# the loops: region name (without the _sdot / _smull suffix of the integer ones) -> what it is, bytes/weight
# for one token (None: not a one-token path)
PATHS = {
    "f32_dense": ("dense fp32 weights, 4 fmla", 4.0),
    "f32_portable_c": ("fp32 compute, 8-bit indices, portable C (wc_gemv_c: scalar, one dependent sum)", 1.0),
    "f32_4bit": ("fp32 compute, 4-bit indices (K <= 16): nibble unzip, 4 tbl (1 register), 8 zips, 4 fmla", 0.5),
    "f32_8bit_k16": ("fp32 compute, 8-bit indices, K <= 16: 4 tbl (1 register), 8 zips, 4 fmla", 1.0),
    "f32_8bit_k32": ("fp32 compute, 8-bit indices, K <= 32: 4 tbl (2 registers)", 1.0),
    "f32_8bit_k64": ("fp32 compute, 8-bit indices, K <= 64: 4 tbl (4 registers)", 1.0),
    "f32_8bit_k256_gather": ("fp32 compute, 8-bit indices, K <= 256: 16 lane loads", 1.0),
    "deq_f32_8bit_k16": ("dequantize to float32, 8-bit indices, K <= 16: 4 tbl (1 register), st4", None),
    "deq_f32_8bit_k64": ("dequantize to float32, 8-bit indices, K <= 64: 4 tbl (4 registers), st4", None),
    "deq_bf16_8bit_k64": ("dequantize to bf16, 8-bit indices, K <= 64: 2 tbl (4 registers), st2", None),
    "i8_4bit": ("int8 compute, 4-bit indices: 1 tbl + dot + row sum", 0.5),
    "i8_8bit_k64": ("int8 compute, 8-bit indices, K <= 64: 1 tbl (4 registers) + dot + row sum", 1.0),
    "i8_8bit_k256": ("int8 compute, 8-bit indices, K <= 256: 4 tbl (4 registers each) ORed + dot + row sum", 1.0),
}

# boards: CPU cores used, their clock, the model that stands for them, and DRAM bandwidth (platforms.py)
BOARDS = {
    "jetson-tx2": {"cores": 4, "clock_hz": 2.0e9, "model": "cortex-a57",
                   "cpu": "4x Cortex-A57 at 2.0 GHz (the 2 Denver2 cores left out: no LLVM model)",
                   "source": "Jetson TX2 module datasheet (max CPU clock 2.0 GHz)"},
    "jetson-xavier": {"cores": 8, "clock_hz": 2.265e9, "model": "neoverse-n2",
                      "cpu": "8x Carmel (ARMv8.2 with dot product) at 2.265 GHz, modelled as Neoverse N2",
                      "source": "Jetson AGX Xavier datasheet (8-core Carmel, max 2.265 GHz)"},
}


def llvm_mca() -> str | None:
    for v in range(20, 13, -1):
        if shutil.which(f"llvm-mca-{v}"):
            return f"llvm-mca-{v}"
    return shutil.which("llvm-mca")


def regions(asm: str) -> dict[str, str]:
    """Loop bodies between LLVM-MCA markers, without gcc's #APP lines and inline-asm comments."""
    out, name, body = {}, None, []
    for line in asm.splitlines():
        m = re.search(r"LLVM-MCA-(BEGIN|END)\s+(\S+)", line)
        if m and m.group(1) == "BEGIN":
            name, body = m.group(2), []
        elif m:
            out[name] = "\n".join(body) + "\n"
            name = None
        elif name and line.strip() and not line.lstrip().startswith(("#", "//")):
            body.append(line)
    return out


def mca(tool: str, cpu: str, body: str, mattr: str | None, blocks: int = 1) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".s", delete=False) as f:
        f.write(body)
    try:
        cmd = [tool, "-mtriple=aarch64-linux-gnu", f"-mcpu={cpu}", f"-iterations={ITERATIONS}", f.name]
        if mattr:
            cmd.insert(2, f"-mattr={mattr}")
        r = subprocess.run(cmd, capture_output=True, text=True)
    finally:
        os.unlink(f.name)
    if r.returncode:
        return {"error": r.stderr.strip().splitlines()[0] if r.stderr.strip() else f"rc {r.returncode}"}
    total = int(re.search(r"Total Cycles:\s+(\d+)", r.stdout).group(1))
    rthr = float(re.search(r"Block RThroughput:\s+([\d.]+)", r.stdout).group(1))
    return {"cycles_per_16": round(total / ITERATIONS / blocks, 2), "block_rthroughput": rthr,
            "instructions": len([l for l in body.splitlines() if l.strip() and not l.strip().endswith(":")])}


def compile_loops(cflags: list[str], dotprod: bool) -> str:
    with tempfile.TemporaryDirectory() as d:
        s = os.path.join(d, "loops.s")
        cmd = [CC, "-O3", "-std=c11", "-I" + CSRC, *cflags, "-S", LOOPS, "-o", s]
        if dotprod:
            cmd.insert(1, "-DWC_MCA_DOTPROD")
        subprocess.run(cmd, check=True, capture_output=True, text=True)
        return open(s).read()


def markdown(result: dict) -> str:
    """The cycles table (loops x core models) and, per board, one ViT-B/16 token per path."""
    models = list(result["models"])
    names = list(PATHS)
    rows = [n for base in names for n in (base, base + "_smull", base + "_sdot")
            if any(n in result["models"][m]["loops"] for m in models)]
    out = ["| loop (16 weights, 1 token) | " + " | ".join(models) + " |", "|---|" + "---:|" * len(models)]
    for n in rows:
        cells = [str(result["models"][m]["loops"].get(n, {}).get("cycles_per_16", "n/a")) for m in models]
        out.append(f"| `{n}` | " + " | ".join(cells) + " |")
    for board, b in result["boards"].items():
        out += ["", f"{board}: {b['cpu']}, {b['dram_bytes_per_s'] / 1e9:.1f} GB/s", "",
                "| path | bytes/weight | cycles/16 | compute ms | DRAM ms | token ms | vs dense fp32 |",
                "|---|---:|---:|---:|---:|---:|---:|"]
        for n in rows:
            p = b["paths"].get(n)
            if p:
                out.append(f"| `{n}` | {p['bytes_per_weight']:g} | {p['cycles_per_16']} | {p['compute_ms']:.2f} | "
                           f"{p['dram_ms']:.2f} | {p['token_ms']:.2f} ({p['bound']}) | {p['speedup_vs_dense']:.2f}x |")
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", help="write the JSON here too")
    ap.add_argument("--markdown", metavar="JSON", help="print the tables of docs/arm64.md from a saved result")
    args = ap.parse_args()
    if args.markdown:
        with open(args.markdown) as f:
            print(markdown(json.load(f)))
        return 0
    tool = llvm_mca()
    if tool is None or shutil.which(CC) is None:
        print(f"needs {CC} and llvm-mca (Debian: gcc-aarch64-linux-gnu, llvm)", file=sys.stderr)
        return 2
    gcc_version = subprocess.run([CC, "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    mca_version = next((l.strip() for l in subprocess.run([tool, "--version"], capture_output=True, text=True)
                        .stdout.splitlines() if "LLVM version" in l), tool)
    result = {"tools": {"cc": gcc_version, "llvm_mca": mca_version}, "iterations": ITERATIONS,
              "unit": "cycles per 16 weights, one token (row of x), steady state, L1-resident tables and x",
              "models": {}, "llvm_models": {}, "boards": {}}

    # which model each named core gets: a dense loop's result compared with the Cortex-A57 model's
    probe_body = regions(compile_loops(["-march=armv8.2-a+dotprod"], True))["i8_8bit_k256_sdot"]
    ref = mca(tool, "cortex-a57", probe_body, "+dotprod")
    for cpu in PROBE:
        r = mca(tool, cpu, probe_body, "+dotprod")
        if "error" in r:
            result["llvm_models"][cpu] = "no scheduling model in this LLVM"
        elif cpu != "cortex-a57" and r == ref:
            result["llvm_models"][cpu] = "same results as the cortex-a57 model (no model of its own)"
        else:
            result["llvm_models"][cpu] = "own model"

    for model, spec in MODELS.items():
        bodies = regions(compile_loops(spec["cflags"], False))
        if spec["dotprod"]:
            bodies.update({k: v for k, v in regions(compile_loops(spec["cflags"], True)).items()
                           if k.endswith("_sdot")})
        rows = {}
        for name, body in sorted(bodies.items()):
            blocks = 2 if "_x2" in name else 1  # 4-bit loops: two blocks of 16 an iteration
            rows[name.replace("_x2", "")] = mca(tool, model, body, "+dotprod" if name.endswith("_sdot") else None,
                                                blocks)
        result["models"][model] = {"stands_for": spec["for"], "cflags": spec["cflags"], "loops": rows}

    sys.path.insert(0, os.path.join(ROOT, "src"))
    from wclust.performance import platforms  # noqa: E402 (the boards' DRAM bandwidths)

    for board, b in BOARDS.items():
        bw = platforms.get(board).bandwidth
        loops = result["models"][b["model"]]["loops"]
        rows = {}
        for name, r in loops.items():
            if "error" in r:
                continue
            base = re.sub(r"_(sdot|smull)$", "", name)
            desc, bpw = PATHS[base]
            if bpw is None:  # dequantize: many rows of x, not one token
                continue
            compute = VIT_B16_WEIGHTS / 16 * r["cycles_per_16"] / b["clock_hz"] / b["cores"]
            memory = VIT_B16_WEIGHTS * bpw / bw
            rows[name] = {"what": desc, "bytes_per_weight": bpw, "cycles_per_16": r["cycles_per_16"],
                          "compute_ms": round(compute * 1e3, 3), "dram_ms": round(memory * 1e3, 3),
                          "token_ms": round(max(compute, memory) * 1e3, 3),
                          "bound": "compute" if compute > memory else "DRAM",
                          "weights_per_s_per_core": round(16 * b["clock_hz"] / r["cycles_per_16"] / 1e9, 3)}
        dense = rows["f32_dense"]["token_ms"]
        for r in rows.values():
            r["speedup_vs_dense"] = round(dense / r["token_ms"], 2)
        result["boards"][board] = {"cpu": b["cpu"], "cores": b["cores"], "clock_hz": b["clock_hz"],
                                   "source": b["source"], "model": b["model"], "dram_bytes_per_s": bw,
                                   "weights": VIT_B16_WEIGHTS, "note": "weights_per_s_per_core in G/s",
                                   "paths": rows}
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
