"""Helpers shared by CLI commands: options, output checks, JSON printing."""
from __future__ import annotations

import json
import os
import sys
import tempfile

from ..errors import WclustError
from ..atomic import jsonable


# the single-k clustering options and their defaults (cluster_options_given)
CLUSTER_DEFAULTS = {"scope": "layer", "bits": None, "group_size": 64, "outliers": 0.0, "channel_scale": False,
                    "include": None, "exclude": None, "no_default_exclude": False, "weighting": "uniform",
                    "error_feedback": False}


def add_cluster_options(p, k_many: bool = False, k_default: int | None = 64) -> None:
    """The clustering options; ``k_default=None``: without -k nothing is clustered (eval). Their
    defaults are CLUSTER_DEFAULTS (store_true flags: False)."""
    d = CLUSTER_DEFAULTS
    if k_many:
        p.add_argument("-k", "--n-clusters", type=int, nargs="+", default=[16, 32, 64, 128, 256],
                       help="codebook lengths to try")
        p.add_argument("--scope", nargs="+", choices=["model", "layer", "group"], default=["layer", "model"])
    else:
        p.add_argument("-k", "--n-clusters", type=int, default=k_default,
                       help="codebook length, 2..256 " + ("(default 64)" if k_default == 64 else
                                                          "(default: none, the model is scored as it is)"))
        p.add_argument("--scope", choices=["model", "layer", "group"], default=d["scope"],
                       help=f"(default {d['scope']})")
    p.add_argument("--bits", type=int, default=d["bits"], help="stored index width (default ceil(log2 k))")
    p.add_argument("--group-size", type=int, default=d["group_size"],
                   help="output channels per codebook with --scope group")
    p.add_argument("--outliers", type=float, default=d["outliers"], help="fraction of largest weights kept in float")
    p.add_argument("--channel-scale", action="store_true", help="per-output-channel scales + shared codebook")
    p.add_argument("--include", nargs="+", default=d["include"], metavar="PATTERN",
                   help="fnmatch patterns of module names: cluster only these (the excludes still win)")
    p.add_argument("--exclude", nargs="+", default=d["exclude"], metavar="PATTERN",
                   help="fnmatch patterns of module names to keep float, in addition to the default ones "
                        "(position and patch embeddings)")
    p.add_argument("--no-default-exclude", action="store_true",
                   help="cluster position and patch embeddings too (float by default)")
    p.add_argument("--weighting", choices=["uniform", "fisher", "activation"], default=d["weighting"],
                   help="k-means weights: uniform, diagonal Fisher (eval/sweep), or activation energy E[x^2] "
                        "of each input feature; from <= 64 train examples of the task")
    p.add_argument("--error-feedback", action="store_true",
                   help="GPTQ-style assignment of Linear weights: each input column's rounding error is pushed "
                        "onto the columns not yet assigned (X^T X of <= 64 train examples of the task)")


def needs_calibration(args) -> bool:
    """Whether the clustering options read calibration examples of a task."""
    return getattr(args, "weighting", "uniform") != "uniform" or bool(getattr(args, "error_feedback", False))


def cluster_options_given(args) -> list[str]:
    """The single-k clustering options (besides -k) set on the command line, as flags."""
    return ["--" + n.replace("_", "-") for n, d in CLUSTER_DEFAULTS.items() if getattr(args, n, d) != d]


def check_at_least_one(args, *names) -> None:
    """Refuse a numeric option below 1 (None: not given, the command's default applies)."""
    for n in names:
        v = getattr(args, n, None)
        if v is not None and v < 1:
            raise WclustError(f"--{n.replace('_', '-')} must be >= 1, got {v}")


def exclude_from_args(args) -> list[str] | None:
    """--exclude patterns added to the default ones (None: just the defaults), or without them
    with --no-default-exclude."""
    from ..clustering.config import DEFAULT_EXCLUDE

    no_default = getattr(args, "no_default_exclude", False)
    if not (args.exclude or no_default):
        return None
    return ([] if no_default else list(DEFAULT_EXCLUDE)) + list(args.exclude or [])


def warn_unmatched_patterns(model, args) -> None:
    """A warning on stderr for each --include / --exclude pattern that names no module of ``model``."""
    import fnmatch

    names = [n for n, _ in model.named_modules()]
    for flag in ("include", "exclude"):
        for pat in getattr(args, flag, None) or []:
            if not any(fnmatch.fnmatchcase(n, pat) for n in names):
                print(f"wclust: warning: --{flag} {pat!r} matches no module of this model", file=sys.stderr)


def config_from_args(args, k=None, scope=None):
    from ..clustering.config import ClusterConfig

    exclude = exclude_from_args(args)
    if args.group_size != CLUSTER_DEFAULTS["group_size"] and (scope or args.scope) != "group":
        raise WclustError("--group-size applies to --scope group")

    return ClusterConfig(n_clusters=k if k is not None else args.n_clusters, scope=scope or args.scope,
                         bits=args.bits, group_size=args.group_size, outliers=args.outliers,
                         channel_scale=args.channel_scale, include=args.include, exclude=exclude,
                         weighting=getattr(args, "weighting", "uniform") or "uniform",
                         error_feedback=bool(getattr(args, "error_feedback", False)))


def check_task(spec: str) -> None:
    """Refuse an unknown or unavailable task before any model is loaded (fast)."""
    from ..accuracy.tasks import check_task_spec

    check_task_spec(spec)


def require_float_source(source: str | None, command: str) -> None:
    """Commands that cluster take a float model source, not a .wclust file."""
    if source and source.endswith(".wclust"):
        raise WclustError(f"{source} is already a .wclust file; {command} takes a float model source "
                          "(zoo:NAME, hf:DIR, timm:NAME, arch:NAME)")


def check_output_path(path: str, suffix: str | None = None) -> str:
    if suffix and not path.endswith(suffix):
        raise WclustError(f"output {path!r} should end with {suffix}")
    d = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(d):
        raise WclustError(f"output directory {d!r} does not exist")
    if not os.access(d, os.W_OK):
        raise WclustError(f"output directory {d!r} is not writable")
    if os.path.isdir(path):
        raise WclustError(f"output {path!r} is a directory")
    try:  # before any long work: can a file really be created there (read-only mounts, /proc, root)?
        with tempfile.TemporaryFile(dir=d):
            pass
    except OSError as e:
        raise WclustError(f"output directory {d!r} is not writable ({e.strerror})") from None
    return path


# directories check_output_dir made in this process, deepest first: the CLI removes them when the
# command fails while they are still empty (remove_created_dirs), so a refused run leaves nothing
created_dirs: list[str] = []


def _missing_dirs(path: str) -> list[str]:
    """The directories that creating ``path`` would make, deepest first."""
    missing, d = [], os.path.abspath(path)
    while not os.path.exists(d):
        missing.append(d)
        parent = os.path.dirname(d)
        if parent == d:
            break
        d = parent
    return missing


def remove_created_dirs() -> None:
    """Remove the directories this process made (deepest first) while they hold no file (empty
    folders the command made inside them, such as the study's parts/, go with them)."""
    while created_dirs:
        d = created_dirs.pop(0)
        try:
            for root, dirs, files in os.walk(d, topdown=False):
                if files:
                    raise OSError(f"{root} holds files")
                for sub in dirs:
                    os.rmdir(os.path.join(root, sub))
            os.rmdir(d)
        except OSError:   # a file written (or gone): keep it and everything above it
            created_dirs.clear()


def check_output_dir(path: str) -> str:
    missing = _missing_dirs(path)
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise WclustError(f"cannot create output directory {path!r}: {e.strerror}") from None
    created_dirs[:0] = missing
    if not os.access(path, os.W_OK):
        raise WclustError(f"output directory {path!r} is not writable")
    return path


def print_json(obj) -> None:
    json.dump(jsonable(obj), sys.stdout, indent=2)
    sys.stdout.write("\n")


def print_table(rows: dict) -> None:
    w = max(len(k) for k in rows)
    for k, v in rows.items():
        if isinstance(v, float):
            v = f"{v:,.4g}" if abs(v) < 1e4 else f"{v:,.0f}"
        elif isinstance(v, int):
            v = f"{v:,}"
        print(f"{k:<{w}}  {v}")
