"""wclust info FILE [--json]"""
from __future__ import annotations

import os

from .common import print_json, print_table


def register(sub) -> None:
    p = sub.add_parser("info", help="describe a .wclust file")
    p.add_argument("file")
    p.add_argument("--json", action="store_true")
    p.add_argument("--quick", action="store_true",
                   help="read the header only (skip checking the tensors and the sha256 digest)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..errors import WclustError
    from ..clustering.validate import read_file

    if os.path.isdir(args.file):
        raise WclustError(f"{args.file} is a directory, not a .wclust file")
    if not os.path.exists(args.file):
        kind, sep, _ = args.file.partition(":")
        if sep and kind in ("zoo", "hf", "timm", "arch"):
            raise WclustError(f"info describes a .wclust file; {args.file!r} is a model source "
                              f"(make one with: wclust compress {args.file} -o OUT.wclust)")
        raise WclustError(f"{args.file}: no such file")
    # by default the whole file is checked (every tensor and the sha256 digest), so a corrupted
    # file is reported here and not first at load time
    h = read_file(args.file, header_only=args.quick)[0]
    stats = dict(h.get("stats") or {})
    out = {k: stats.get(k) for k in ("params_total", "params_clustered", "n_codebooks", "bits", "bytes_fp32")}
    out["bytes_file"] = os.path.getsize(args.file)
    if isinstance(out["bytes_fp32"], (int, float)) and out["bytes_file"]:
        out["compression_ratio"] = out["bytes_fp32"] / out["bytes_file"]
    out["sqnr_db"] = stats.get("sqnr_db")
    out["format_version"] = h["format_version"]
    out["n_modules"] = len(h["modules"])
    src = h.get("source") or {}
    out["source"] = src.get("zoo") or src.get("name") or src.get("class")
    out["verified"] = not args.quick
    out["config"] = h.get("config")
    if args.json:
        print_json(out)
    else:
        print_table({k: v for k, v in out.items() if k != "config"})
    return 0
