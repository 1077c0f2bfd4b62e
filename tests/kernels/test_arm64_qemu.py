"""ARM64 build and kernels, on an x86 machine: the C library and the C test program
(tests/c/test_kernels.c) cross-compiled with aarch64-linux-gnu-gcc and run under qemu-aarch64,
once on a CPU without the dot product (cortex-a57, Jetson TX2's big cores) and once with it
(max: dot product, i8mm). The test program checks every ARM64 kernel against the portable C one
(exact for lookups, dequantize and integer compute; a stated rounding bound for fp32 sums) and
prints the cases run, the CPU features read from the OS and the kernels each ISA level picks.
Also: the portable build (ARM64 code compiled out, -DWC_NO_ARM64) under qemu, the same program
built natively on x86-64, and the cross-built library's exported symbols against wclust.h.
Skipped, with the reason, where the cross compiler, its sysroot or qemu is missing
(scripts/setup.sh installs them from Debian when run as root)."""
import glob
import os
import platform
import re
import shutil
import subprocess
import sys

import pytest

from wclust import _native

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CSRC = os.path.join(ROOT, "src", "wclust", "csrc")
TEST_C = os.path.join(ROOT, "tests", "c", "test_kernels.c")
CROSS, QEMU, SYSROOT = "aarch64-linux-gnu-gcc", "qemu-aarch64", "/usr/aarch64-linux-gnu"
CFLAGS = ["-O2", "-std=c11", "-fno-strict-aliasing", "-pthread", "-fvisibility=hidden", "-fPIC", "-I" + CSRC]


def lib_sources(arch_dir: str) -> list[str]:
    """The library's C files for one arch folder (setup.py's rule: top level, portable/, the arch's)."""
    return sorted(glob.glob(os.path.join(CSRC, "*.c")) + glob.glob(os.path.join(CSRC, "portable", "*.c"))
                  + glob.glob(os.path.join(CSRC, arch_dir, "*.c")))


def need_cross():
    missing = [t for t in (CROSS, QEMU) if shutil.which(t) is None]
    if missing:
        pytest.skip(f"{' and '.join(missing)} not installed (Debian: gcc-aarch64-linux-gnu, qemu-user; "
                    "scripts/setup.sh installs them as root)")
    if not os.path.isdir(os.path.join(SYSROOT, "lib")):
        pytest.skip(f"no aarch64 sysroot at {SYSROOT} (Debian: libc6-dev-arm64-cross)")


def build(cc: str, out_dir: str, arch_dir: str, defines=()) -> dict:
    """Compile the library's sources once; link them as the shared library and as the test program."""
    os.makedirs(out_dir, exist_ok=True)
    objs = []
    for src in lib_sources(arch_dir) + [TEST_C]:
        obj = os.path.join(out_dir, os.path.relpath(src, ROOT).replace(os.sep, "_") + ".o")
        subprocess.run([cc, *CFLAGS, *defines, "-c", src, "-o", obj], check=True, capture_output=True, text=True)
        objs.append(obj)
    lib, prog = os.path.join(out_dir, "libwclust.so"), os.path.join(out_dir, "test_kernels")
    subprocess.run([cc, "-shared", "-pthread", *objs[:-1], "-lm", "-ldl", "-o", lib], check=True)
    subprocess.run([cc, "-pthread", *objs, "-lm", "-ldl", "-o", prog], check=True)
    return {"lib": lib, "prog": prog}


def run_qemu(prog: str, cpu: str) -> str:
    r = subprocess.run([QEMU, "-L", SYSROOT, "-cpu", cpu, prog], capture_output=True, text=True, timeout=600)
    print(f"--- qemu-aarch64 -cpu {cpu}\n{r.stdout}{r.stderr}")
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def coverage(out: str) -> None:
    """Every packed width 1..8, both in-memory widths, groups, many rows and ragged rows were run."""
    m = re.search(r"layers: (\d+) at 4-bit and (\d+) at 8-bit indices; by packed width \(ceil\(log2 K\)\) 1..8:"
                  r"((?: \d+){8}); (\d+) with several codebook groups, (\d+) with > 4 rows of x, (\d+) with", out)
    assert m, out
    assert int(m.group(1)) and int(m.group(2)) and all(int(n) for n in m.group(3).split())
    assert int(m.group(4)) and int(m.group(5)) and int(m.group(6))


@pytest.fixture(scope="module")
def arm64_build(tmp_path_factory):
    need_cross()
    return build(CROSS, str(tmp_path_factory.mktemp("arm64")), "arm64")


def test_arm64_kernels_without_dot_product(arm64_build):
    out = run_qemu(arm64_build["prog"], "cortex-a57")
    coverage(out)
    assert "asimd=1 asimddp=0" in out
    assert "detected ISA level 3" in out and "ISA levels exercised: 0 3\n" in out
    assert "dispatch at level 3: fp32 gemv / dequantize: neon (tbl + fmla); int8 gemv: neon (smull/sadalp)" in out
    assert " 0 mismatches" in out and out.rstrip().endswith("OK")


def test_arm64_kernels_with_dot_product(arm64_build):
    out = run_qemu(arm64_build["prog"], "max")
    coverage(out)
    assert "asimddp=1" in out
    assert "detected ISA level 4" in out and "ISA levels exercised: 0 3 4\n" in out
    assert "dispatch at level 4: fp32 gemv / dequantize: neon (tbl + fmla); int8 gemv: dotprod (sdot)" in out
    assert " 0 mismatches" in out and out.rstrip().endswith("OK")


def test_arm64_kernels_under_sanitizers(tmp_path):
    """The same program with AddressSanitizer and UBSan (any read or write past a buffer, e.g. a
    16-byte load at a row's end, or undefined behaviour stops it), on the dot-product CPU, which
    runs every ARM64 kernel. Its buffers are allocated to their exact sizes."""
    need_cross()
    prog = str(tmp_path / "test_kernels_asan")
    flags = ["-O1", "-std=c11", "-pthread", "-fno-omit-frame-pointer", "-fsanitize=address,undefined",
             "-fno-sanitize-recover=all", "-I" + CSRC]
    r = subprocess.run([CROSS, *flags, TEST_C, *lib_sources("arm64"), "-lm", "-ldl", "-o", prog],
                       capture_output=True, text=True)
    if r.returncode and "asan" in r.stderr.lower():
        pytest.skip(f"no aarch64 sanitizer runtime: {r.stderr.strip().splitlines()[-1]}")
    assert r.returncode == 0, r.stderr
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=0")  # LeakSanitizer does not run under qemu-user
    r = subprocess.run([QEMU, "-L", SYSROOT, "-cpu", "max", prog], capture_output=True, text=True, timeout=600,
                       env=env)
    print(r.stdout + r.stderr)
    assert r.returncode == 0 and "ERROR" not in r.stderr and "runtime error" not in r.stderr, r.stdout + r.stderr
    assert " 0 mismatches" in r.stdout and "ISA levels exercised: 0 3 4" in r.stdout


def test_arm64_library_exports_exactly_the_header(arm64_build):
    nm = "aarch64-linux-gnu-nm"
    if shutil.which(nm) is None:
        pytest.skip(f"no {nm} (Debian: binutils-aarch64-linux-gnu)")
    out = subprocess.run([nm, "-D", "--defined-only", arm64_build["lib"]], capture_output=True, text=True,
                         check=True).stdout
    exported = {line.split()[-1] for line in out.splitlines() if line.split()[1:2] == ["T"]}
    assert exported == set(_native.header_functions())


def test_setup_py_cross_build(tmp_path):
    """setup.py's own build for aarch64 (CC and WCLUST_TARGET_ARCH set, as on an x86 machine): the
    arm64/ sources and no x86/ ones, an aarch64 library exporting wclust.h's functions."""
    need_cross()
    nm = "aarch64-linux-gnu-nm"
    if shutil.which(nm) is None:
        pytest.skip(f"no {nm} (Debian: binutils-aarch64-linux-gnu)")
    env = dict(os.environ, CC=CROSS, WCLUST_TARGET_ARCH="aarch64")
    env.pop("CFLAGS", None), env.pop("LDSHARED", None)
    subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--build-lib", str(tmp_path / "lib"),
                    "--build-temp", str(tmp_path / "tmp")], cwd=ROOT, env=env, check=True, capture_output=True)
    objs = {os.path.relpath(p, tmp_path / "tmp") for p in glob.glob(str(tmp_path / "tmp" / "**" / "*.o"), recursive=True)}
    assert any("arm64" in o for o in objs) and not any("x86" in o for o in objs), objs
    (lib,) = glob.glob(str(tmp_path / "lib" / "wclust" / "_libwclust*.so"))
    out = subprocess.run([nm, "-D", "--defined-only", lib], capture_output=True, text=True, check=True).stdout
    assert {line.split()[-1] for line in out.splitlines() if line.split()[1:2] == ["T"]} == \
        set(_native.header_functions())


def test_arm64_portable_build(tmp_path):
    """-DWC_NO_ARM64: the ARM64 kernels compiled out; every entry point on the portable kernels."""
    need_cross()
    b = build(CROSS, str(tmp_path), "arm64", defines=["-DWC_NO_ARM64"])
    out = run_qemu(b["prog"], "max")
    assert "ARM64 kernels compiled out" in out and "detected ISA level 0" in out
    assert " 0 mismatches" in out and out.rstrip().endswith("OK")


def test_native_build_without_arm64_code(tmp_path):
    """The same program built for this x86-64 machine: the exported entry points at every ISA level
    it has, against the portable kernels."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        pytest.skip("not an x86-64 host (on aarch64 the qemu tests' program runs natively as this one)")
    cc = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler")
    b = build(cc, str(tmp_path), "x86")
    r = subprocess.run([b["prog"]], capture_output=True, text=True, timeout=600)
    print(r.stdout + r.stderr)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "ARM64 kernels compiled out" in r.stdout and " 0 mismatches" in r.stdout
