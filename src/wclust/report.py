"""Study report: trade-off table, recommendation, figures, markdown — all from one results dict.

``render_markdown(results)`` only formats numbers found in ``results`` (the same dict written
to results.json), so the report and the JSON cannot disagree.
"""
from __future__ import annotations

import math
import statistics

from . import figures


def _mb(b) -> str:
    return "-" if b is None else f"{b / 2**20:,.2f}"


def _f(v, fmt="{:.2f}") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return fmt.format(v)


def tradeoff_rows(sweep: dict, bench: dict | None, estimate: dict | None) -> list[dict]:
    """One row per (scope, k): accuracy, drop, bytes, measured speed-up, modelled energy per platform."""
    fp32 = sweep["fp32"]
    speed = {}
    for k, b in ((bench or {}).get("by_k") or {}).items():
        speed[int(k)] = b
    rows = []
    for r in sweep["rows"]:
        k = int(r["k"])
        row = {"scope": r["scope"], "k": k, "top1": r["top1"], "top5": r.get("top5"),
               "drop": fp32["top1"] - r["top1"], "ci95": r.get("ci95"), "bytes": r["bytes"],
               "bytes_ratio": fp32["bytes"] / r["bytes"] if r.get("bytes") else None, "sqnr_db": r.get("sqnr_db"),
               "label": r.get("label") or f"{r['scope']} k={k}"}
        if k in speed:
            row["speedup_fp32"] = speed[k].get("speedup_fp32")
            row["speedup_bf16"] = speed[k].get("speedup_bf16")
            row["speedup_int8_compute"] = speed[k].get("speedup_int8_compute")
        if estimate:
            row["energy_saving_pct"] = {name: p["k"][str(k)]["energy_saving_pct"]
                                        for name, p in estimate["platforms"].items() if str(k) in p["k"]}
        rows.append(row)
    return rows


def recommend(rows: list[dict], max_drop: float) -> dict | None:
    """The smallest configuration whose top-1 drop stays within ``max_drop`` points."""
    ok = [r for r in rows if r["drop"] <= max_drop]
    if not ok:
        return None
    best = min(ok, key=lambda r: (r["bytes"], -r["top1"]))
    return dict(best, max_drop=max_drop)


def plot_tradeoff(rows: list[dict], fp32: dict, path: str, title: str = "") -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker  # noqa: F401  (used below as matplotlib.ticker)
    import matplotlib.transforms  # noqa: F401

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    scopes = sorted({r["scope"] for r in rows})
    markers = dict(zip(scopes, "osD^v<>"))
    for n, s in enumerate(scopes):
        rs = sorted((r for r in rows if r["scope"] == s), key=lambda r: r["bytes"])
        ax.plot([r["bytes"] / 2**20 for r in rs], [r["top1"] for r in rs], marker=markers[s], label=f"{s}")
    # the number of clusters on a top axis, once per k (the scopes' sizes differ by their codebooks
    # only): labels beside each point overlapped where the curves meet
    ks = sorted({r["k"] for r in rows})
    at = {k: statistics.median(r["bytes"] for r in rows if r["k"] == k) / 2**20 for k in ks}
    above = matplotlib.transforms.blended_transform_factory(ax.transData, ax.transAxes)
    for k in ks:
        ax.plot([at[k]], [1.0], marker="|", color="grey", ms=5, transform=above, clip_on=False)
        ax.text(at[k], 1.02, str(k), transform=above, ha="center", va="bottom", fontsize=7, color="dimgrey")
    ax.text(-0.01, 1.02, "clusters k", transform=ax.transAxes, ha="right", va="bottom", fontsize=7, color="dimgrey")
    ax.scatter([fp32["bytes"] / 2**20], [fp32["top1"]], color="black", marker="*", s=120, label="fp32", zorder=5)
    ax.axhline(fp32["top1"], color="grey", lw=0.8, ls="--")
    # log scale: the clustered sizes (a few MiB apart) stay readable beside fp32's
    smallest = min([r["bytes"] for r in rows] + [fp32["bytes"]]) / 2**20
    ax.set_xscale("log")
    ax.set_xlim(smallest / 1.25, fp32["bytes"] / 2**20 * 1.25)
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}" if str(v)[0] in "2358" else ""))
    ax.set_xlabel("model weights (MiB, log scale)")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_title(title or "Accuracy vs size", pad=16)
    ax.grid(alpha=0.3)
    ax.legend(title="scope")
    fig.tight_layout()
    return figures.save(fig, path)


def _table(header: list[str], rows: list[list]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def render_markdown(res: dict) -> str:
    m, task, sweep = res["model"], res["task"], res["sweep"]
    fp32 = sweep["fp32"]
    L = [f"# wclust study: {m['source']} on {task['name']}", ""]
    for note in res.get("notes", []):
        L.append(f"> {note}")
    L += ["", "## The model", "",
          f"- source `{m['source']}` ({m.get('class', '')}), {m['params_total']:,} parameters, "
          f"{_mb(m['bytes_fp32'])} MiB as fp32",
          f"- task `{task['name']}`: {task.get('description', '')}; n = {fp32.get('n', '-')} test examples",
          f"- run: {res['run']['seconds']:.0f} s on {res['run']['threads']} thread(s)"
          f"{' (quick mode)' if res['run'].get('quick') else ''}", ""]
    prof = res.get("profile")
    if prof:
        t, p = prof["time"], prof["params"]
        L += ["## Where time and memory go (batch 1)", "", "![time](profile_time.png) ![memory](profile_memory.png)", "",
              _table(["operator group", "time (ms)", "share (%)"],
                     [[g, _f(t["ms"][g]), _f(t["percent"][g], "{:.1f}")]
                      for g in sorted(t["ms"], key=t["ms"].get, reverse=True) if t["ms"][g] > 0]), "",
              _table(["parameter kind", "bytes", "share (%)"],
                     [[g, f"{b:,}", _f(p["percent"][g], "{:.1f}")]
                      for g, b in sorted(p["bytes"].items(), key=lambda x: -x[1]) if b > 0]), ""]
    L += ["## Accuracy vs number of clusters", "", "![sweep](sweep.png)", "",
          _table(["scope", "k", "top-1", "drop (pt)", "95% CI", "top-5", "weights MiB", "smaller", "SQNR dB"],
                 [["fp32", "-", _f(fp32["top1"]), "0", _f(fp32.get("ci95"), "±{:.2f}"), _f(fp32.get("top5")),
                   _mb(fp32["bytes"]), "1.0x", "-"]] +
                 [[r["scope"], r["k"], _f(r["top1"]), _f(r["drop"]), _f(r.get("ci95"), "±{:.2f}"), _f(r.get("top5")),
                   _mb(r["bytes"]), _f(r["bytes_ratio"], "{:.1f}x"), _f(r.get("sqnr_db"), "{:.1f}")]
                  for r in res["tradeoff"]]), ""]
    bench = res.get("bench")
    if bench:
        L += ["## Measured speed on this machine", "",
              f"Median latency of one forward pass, batch 1, {bench['threads']} thread(s), kernel ISA "
              f"`{bench.get('kernel_isa', '?')}`, bf16 compute on `{bench.get('bf16_kernel') or '?'}`"
              + (f", indices in {bench['index_pages']} pages" if bench.get("index_pages") else "") + "; all "
              "variants timed side by side in one run.", "",
              _table(["k", "fp32 ms", "int8 dynamic ms", "clustered fp32 ms", "clustered bf16 ms", "clustered int8 ms",
                      "speed-up fp32", "speed-up bf16", "speed-up int8", "int8 dynamic"],
                     [[k, _f(b["fp32_ms"]), _f(b.get("int8_ms")), _f(b["clustered_ms"]), _f(b.get("clustered_bf16_ms")),
                       _f(b.get("clustered_int8_ms")), _f(b["speedup_fp32"], "{:.2f}x"),
                       _f(b.get("speedup_bf16"), "{:.2f}x"), _f(b.get("speedup_int8_compute"), "{:.2f}x"),
                       _f(b.get("speedup_int8"), "{:.2f}x")]
                      for k, b in sorted(bench["by_k"].items(), key=lambda x: int(x[0]))]), ""]
        if "bench.png" in res.get("figures", []):
            L += [f"Every timed run at k={bench['figure_k']} (each dot one forward pass, in the order they ran; "
                  "the spread within a variant is what other work on the machine added):", "",
                  "![bench](bench.png)", ""]
    est = res.get("estimate")
    if est:
        names = list(est["platforms"])
        L += ["## Modelled speed-up and energy per platform", "", "![estimate](estimate.png)", "",
              _table(["k"] + [f"{n} speed-up" for n in names] + [f"{n} energy" for n in names],
                     [[k] + [_f(est["platforms"][n]["k"][str(k)]["speedup"], "{:.2f}x") for n in names]
                      + [_f(-est["platforms"][n]["k"][str(k)]["energy_saving_pct"], "{:+.1f}%") for n in names]
                      for k in est["ks"]]), "",
              "Energy is relative to the fp32 model on the same platform (negative = saved).", ""]
    est_p = res.get("estimate_pressure")
    if est_p:
        names = list(est_p["platforms"])
        L += [f"Under memory pressure (other units take {100 * est_p['contention']:.0f}% of the DRAM bandwidth, "
              "the paper's shared-memory SoC setting):", "",
              _table(["k"] + [f"{n} speed-up" for n in names] + [f"{n} energy" for n in names],
                     [[k] + [_f(est_p["platforms"][n]["k"][str(k)]["speedup"], "{:.2f}x") for n in names]
                      + [_f(-est_p["platforms"][n]["k"][str(k)]["energy_saving_pct"], "{:+.1f}%") for n in names]
                      for k in est_p["ks"]]), ""]
    plats = sorted({n for r in res["tradeoff"] for n in (r.get("energy_saving_pct") or {})})
    L += ["## Trade-off", "", "![trade-off](tradeoff.png)", "",
          _table(["scope", "k", "top-1", "drop (pt)", "weights MiB", "smaller", "speed fp32", "speed bf16",
                  "speed int8"] + [f"energy {n}" for n in plats],
                 [[r["scope"], r["k"], _f(r["top1"]), _f(r["drop"]), _mb(r["bytes"]), _f(r["bytes_ratio"], "{:.1f}x"),
                   _f(r.get("speedup_fp32"), "{:.2f}x"), _f(r.get("speedup_bf16"), "{:.2f}x"),
                   _f(r.get("speedup_int8_compute"), "{:.2f}x")]
                  + [_f(-(r.get("energy_saving_pct") or {}).get(n, float("nan")), "{:+.1f}%") for n in plats]
                  for r in res["tradeoff"]]), "",
          "Speed: measured on this machine (batch 1); energy: modelled, no memory pressure.", ""]
    rec = res.get("recommendation")
    L += ["## Recommendation", ""]
    if rec:
        extra = ""
        if rec.get("speedup_fp32"):
            extra += f", {rec['speedup_fp32']:.2f}x measured speed (fp32 compute)"
        if rec.get("speedup_bf16"):
            extra += f", {rec['speedup_bf16']:.2f}x with bf16 compute"
        if rec.get("speedup_int8_compute"):
            extra += f", {rec['speedup_int8_compute']:.2f}x with int8 compute"
        if rec.get("energy_saving_pct"):
            extra += ", modelled energy " + ", ".join(f"{n} {-v:+.1f}%" for n, v in rec["energy_saving_pct"].items())
        L.append(f"**{rec['label']}**: the smallest configuration within {rec['max_drop']} pt of fp32 top-1 "
                 f"(drop {rec['drop']:.2f} pt): weights {_mb(rec['bytes'])} MiB instead of {_mb(fp32['bytes'])} MiB "
                 f"({rec['bytes_ratio']:.1f}x smaller){extra}.")
    else:
        L.append(f"No configuration stayed within {res['max_drop']} pt of fp32 top-1.")
    return "\n".join(L) + "\n"
