"""Turn ``pytest bench/ --benchmark-json=RUN.json`` output into docs/benchmarks.md and a plot.

    python bench/report.py RUN.json [RUN2.json ...]           # store, then rebuild the docs
    python bench/report.py RUN.json --no-store --md OUT.md --plot OUT.png   # render only these

A ``--bench-record=RUN.jsonl`` file (``benchkit.record``, e.g. assembled over several resumed
sessions) is read as the run it records, and may be given next to JSON files.

Each run is stored as ``docs/bench/<device>.json`` (a later run on the same device replaces
it), and ``docs/benchmarks.md`` / ``docs/benchmarks.png`` are rebuilt from every stored run,
so the CPU and GPU results live side by side, each with its device, CPU model, commit,
command and date. The plot needs matplotlib (the ``bench`` extra); without it the markdown
is still written. Columns are explained in docs/benchmarking.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
from collections import defaultdict
from pathlib import Path

from benchkit import record  # bench/ is on the path: this script's folder, or pytest's rootdir/bench

ROOT = Path(__file__).resolve().parent.parent
REF, COMPILED = "reference", "compile-reference"
LEVEL_MODE_TITLE = {
    ("op", "fwd"): "message_attention, forward",
    ("op", "fwdbwd"): "message_attention, forward+backward",
    ("model", "fwdbwd"): "RSTG training step (forward+backward)",
}
SHAPE_ORDER = ("syncmnist", "paper", "dense", "huge")


# ----------------------------------------------------------------------------- loading
def load(path: Path) -> dict:
    """A ``--benchmark-json`` file, or a ``--bench-record`` file (read as the same run)."""
    try:
        if record.is_record(path):
            return record.read_run(path)
        with open(path) as f:
            run = json.load(f)
    except record.RecordError as exc:
        raise SystemExit(str(exc)) from None
    except (OSError, json.JSONDecodeError) as exc:
        raise SystemExit(f"{path}: cannot read a benchmark JSON ({exc})") from None
    if "benchmarks" not in run or "rstg" not in run.get("machine_info", {}):
        raise SystemExit(f"{path}: not a `pytest bench/ --benchmark-json` file of this suite")
    return run


def records(run: dict) -> list[dict]:
    """One dict per case: its extra_info, plus the host stats; unmeasured cases too."""
    out = []
    for b in run["benchmarks"]:
        rec = dict(b["extra_info"])
        rec.setdefault("status", "ok")
        rec["name"] = b["name"]
        out.append(rec)
    for u in run.get("rstg_unmeasured", []):
        rec = dict(u["extra_info"])
        rec["name"] = u["name"]
        out.append(rec)
    return out


def device_slug(run: dict) -> str:
    info = run["machine_info"]["rstg"]
    name = info["device_name"] if info["device"] == "cuda" else f"{info['cpu_model']} {info['torch_threads']}t"
    return re.sub(r"[^a-z0-9]+", "-", f"{info['device']} {name}".lower()).strip("-")


def merge(runs: list[dict]) -> list[dict]:
    """Runs of one device (e.g. the op and the model parts of a GPU session) become one run.

    Cases keep their own ``extra_info`` (commit and device included); the run keeps every
    part's command and date. A case measured twice keeps its later measurement.
    """
    by_slug: dict[str, dict] = {}
    for run in runs:
        slug = device_slug(run)
        if slug not in by_slug:
            merged = json.loads(json.dumps(run))
            merged["machine_info"]["rstg"]["commands"] = [run["machine_info"]["rstg"]["command"]]
            merged["parts"] = [{"datetime": run.get("datetime"), "commit": run.get("commit_info", {}).get("id")}]
            by_slug[slug] = merged
            continue
        merged = by_slug[slug]
        info = merged["machine_info"]["rstg"]
        info["commands"].append(run["machine_info"]["rstg"]["command"])
        info["peaks"] = {**info.get("peaks", {}), **run["machine_info"]["rstg"].get("peaks", {})}
        merged["parts"].append({"datetime": run.get("datetime"), "commit": run.get("commit_info", {}).get("id")})
        names = {b["fullname"] for b in run["benchmarks"]} | {u["fullname"] for u in run.get("rstg_unmeasured", [])}
        merged["benchmarks"] = [b for b in merged["benchmarks"] if b["fullname"] not in names] + run["benchmarks"]
        merged["rstg_unmeasured"] = [
            u for u in merged.get("rstg_unmeasured", []) if u["fullname"] not in names
        ] + run.get("rstg_unmeasured", [])
    return list(by_slug.values())


# ----------------------------------------------------------------------------- formatting
def _fmt_ms(ms: float | None) -> str:
    if ms is None or (isinstance(ms, float) and math.isnan(ms)):
        return "-"
    return f"{ms:.3g}" if ms < 1000 else f"{ms:,.0f}"


def _fmt_ratio(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}x"


def _fmt_mib(b: int | None) -> str:
    return "-" if b is None else f"{b / 2**20:,.1f}"


def _fmt_frac(r: dict) -> str:
    if r.get("frac_peak") is None:
        return "-"
    text = f"{100 * r['frac_peak']:.1f}"
    if r.get("frac_peak_tf32") is not None:
        text += f" (TF32: {100 * r['frac_peak_tf32']:.1f})"
    return text


def _ratio(num, den):
    return num / den if num and den else None


def _sort_key(rec: dict):
    shape = SHAPE_ORDER.index(rec["shape"]) if rec["shape"] in SHAPE_ORDER else len(SHAPE_ORDER)
    order = {REF: 0, COMPILED: 1, "pyg": 2}
    return (shape, rec["G"], order.get(rec["provider"], 3), rec["provider"])


def tables(run: dict) -> list[str]:
    """Markdown tables: one per (level, mode, dtype), rows per shape and implementation."""
    recs = [r for r in records(run) if r["level"] != "paired"]
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in recs:
        groups[(r["level"], r["mode"], r["dtype"], r.get("heads", 1))].append(r)
    gpu = run["machine_info"]["rstg"]["device"] == "cuda"
    lines: list[str] = []
    for (level, mode, dtype, heads), rows in sorted(
        groups.items(), key=lambda kv: (kv[0][0] != "op", kv[0][1], kv[0][2])
    ):
        title = LEVEL_MODE_TITLE.get((level, mode), f"{level} {mode}")
        lines.append(f"#### {title}, {dtype}" + (f", {heads} heads" if heads != 1 else ""))
        lines.append("")
        head = ["shape (graphs)", "implementation", "time ms (p20-p80)"]
        head += ["host ms"] if gpu else []
        head += ["vs reference", "vs compile", "compile s", "peak MiB", "memory vs ref", "GFLOP/s", "% of peak"]
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "---|" * len(head))
        by_case: dict[str, dict[str, dict]] = defaultdict(dict)
        for r in rows:
            by_case[r["case"]][r["provider"]] = r
        for r in sorted(rows, key=_sort_key):
            peers = by_case[r["case"]]
            ref, comp = peers.get(REF, {}), peers.get(COMPILED, {})
            shape = f"{r['case']} ({r['G']})"
            label = r.get("provider_label", r["provider"])
            if r["status"] != "ok":
                cells = [shape, label, f"**{r['status'].upper()}**: {r.get('reason', '')}"]
                cells += ["-"] * (len(head) - len(cells))
                lines.append("| " + " | ".join(cells) + " |")
                continue
            t = r["time_ms"]
            spread = f"{_fmt_ms(t)} ({_fmt_ms(r.get('time_p20_ms'))}-{_fmt_ms(r.get('time_p80_ms'))})"
            ref_t = ref.get("time_ms") if ref.get("status") == "ok" else None
            comp_t = comp.get("time_ms") if comp.get("status") == "ok" else None
            ref_mem = ref.get("peak_mem_bytes") if ref.get("status") == "ok" else None
            vs_ref = _fmt_ratio(_ratio(ref_t, t)) if ref_t else ("ref OOM" if ref.get("status") == "oom" else "-")
            cells = [shape, label, spread] + ([_fmt_ms(r.get("host_ms_median"))] if gpu else [])
            cells += [
                vs_ref,
                _fmt_ratio(_ratio(comp_t, t)),
                f"{r['compile_s']:.1f}" if r.get("compile_s") is not None else "-",
                _fmt_mib(r.get("peak_mem_bytes")),
                _fmt_ratio(_ratio(ref_mem, r.get("peak_mem_bytes"))) if ref_mem else "-",
                f"{r['gflops_per_s']:,.1f}" if r.get("gflops_per_s") else "-",
                _fmt_frac(r),
            ]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return lines + paired_table(run)


def paired_table(run: dict) -> list[str]:
    """Speedups over the reference measured in interleaved pairs (bench/test_bench_paired.py)."""
    recs = sorted((r for r in records(run) if r["level"] == "paired"), key=_sort_key)
    if not recs:
        return []
    head = ["shape (graphs)", "dtype", "backend", "pairs", "reference ms", "backend ms"]
    head += ["speedup: median of pairs (p20-p80)", "speedup: min / min"]
    lines = ["#### message_attention, forward+backward: speedup over reference in interleaved pairs", ""]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in recs:
        cells = [f"{r['case']} ({r['G']})", r["dtype"], r.get("provider_label", r["provider"])]
        if r["status"] != "ok":
            cells.append(f"**{r['status'].upper()}**: {r.get('reason', '')}")
            cells += ["-"] * (len(head) - len(cells))
        else:
            cells += [
                str(r["paired_rounds"]),
                _fmt_ms(r["reference_ms_median"]),
                _fmt_ms(r["backend_ms_median"]),
                f"{_fmt_ratio(r['ratio_median'])} ({_fmt_ratio(r['ratio_p20'])}-{_fmt_ratio(r['ratio_p80'])})",
                _fmt_ratio(r["ratio_of_minima"]),
            ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


def _peak_text(dtype: str, p: dict) -> str:
    text = f"{dtype}: {p['peak_gflops']:,.0f} GFLOP/s ({p['peak_source']})"
    if p.get("peak_tf32_gflops"):
        text += f", TF32 {p['peak_tf32_gflops']:,.0f} GFLOP/s"
    if p.get("microkernel_gflops"):
        text += f", cpu backend micro-kernel on cached data {p['microkernel_gflops']:,.0f} GFLOP/s"
    return text


def run_header(run: dict) -> list[str]:
    info, commit = run["machine_info"]["rstg"], run.get("commit_info", {})
    device = info["device_name"] if info["device"] == "cuda" else f"CPU, {info['cpu_count']} cores"
    dirty = " (uncommitted changes)" if commit.get("dirty") else ""
    peaks = "; ".join(_peak_text(dt, p) for dt, p in info.get("peaks", {}).items())
    v = info.get("versions", {})
    parts = run.get("parts", [{}])
    commits = ", ".join(f"`{c}`" for c in dict.fromkeys(p.get("commit") or commit.get("id", "?") for p in parts))
    scaled = sorted({r["case"] + ": " + r["scale"] for r in records(run) if r.get("scale", "full size") != "full size"})
    lines = [
        f"### {device}: {info['device_name'] if info['device'] == 'cuda' else info['cpu_model']}",
        "",
        f"- device: `{info['device']}` {info['device_name']}; CPU model: {info['cpu_model']}; "
        f"torch threads: {info['torch_threads']}",
        f"- commit: {commits}"
        f"{dirty} (branch {commit.get('branch', '?')}); "
        f"date: {', '.join(str(part['datetime']) for part in run.get('parts', [run]))}",
        *[f"- command: `{c}`" for c in info.get("commands", [info["command"]])],
        f"- versions: torch {v.get('torch')}, triton {v.get('triton')}, torch_geometric {v.get('torch_geometric')}, "
        f"python {v.get('python')}, CUDA {info.get('cuda')}; rstg_fast build: {json.dumps(info.get('build_info', {}))}",
        f"- peak rates measured in this run: {peaks or 'none'}",
    ]
    if scaled:
        lines.append("- scaled-down cases: " + "; ".join(scaled))
    lines.append("")
    return lines


def headline(run: dict) -> list[str]:
    """One line per shape: the best fused implementation's forward+backward speedup."""
    out = []
    recs = [r for r in records(run) if r["status"] == "ok" and r["level"] == "op" and r["mode"] == "fwdbwd"]
    by_case = defaultdict(dict)
    for r in recs:
        by_case[(r["case"], r["dtype"])][r["provider"]] = r
    paired = {
        (r["case"], r["dtype"], r["provider"]): r
        for r in records(run)
        if r["status"] == "ok" and r["level"] == "paired" and r.get("heads", 1) == 1
    }
    for (case, dtype), peers in sorted(by_case.items()):
        fused = [r for p, r in peers.items() if r.get("provider_kind") == "backend"]
        if not fused or REF not in peers:
            continue
        best = min(fused, key=lambda r: r["time_ms"])
        ref = peers[REF]
        line = f"{case} {dtype}: `{best['provider']}` forward+backward {ref['time_ms'] / best['time_ms']:.1f}x faster"
        line += " than reference"
        pair = paired.get((case, dtype, best["provider"]))
        if pair and pair.get("commit") == best.get("commit"):  # merged runs may mix commits
            spread = f"{pair['ratio_p20']:.1f}-{pair['ratio_p80']:.1f}x"
            line += f" (in interleaved pairs: {pair['ratio_median']:.1f}x, p20-p80 {spread})"
        mem = _ratio(ref.get("peak_mem_bytes"), best.get("peak_mem_bytes"))
        if mem:
            line += f", peak memory {mem:.1f}x lower" if mem >= 1 else f", peak memory {1 / mem:.1f}x higher"
        if best.get("frac_peak"):
            line += f", {100 * best['frac_peak']:.0f} % of peak"
        out.append(line)
    return out


# ----------------------------------------------------------------------------- plot
def plot(runs: list[tuple[str, dict]], path: Path) -> bool:
    """Time and memory against edges per call, log-log, one line per implementation."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install 'rstg_fast[bench]'): no plot", file=sys.stderr)
        return False
    panels = [("op", "fwd"), ("op", "fwdbwd"), ("model", "fwdbwd")]
    rows = []  # (run name, dtype, metric)
    for name, run in runs:
        dtypes = sorted({r["dtype"] for r in records(run)})
        for dt in dtypes:
            rows += [(name, run, dt, "time_ms"), (name, run, dt, "peak_mem_bytes")]
    if not rows:
        return False
    fig, axes = plt.subplots(len(rows), len(panels), figsize=(5 * len(panels), 3.2 * len(rows)), squeeze=False)
    labels = sorted({r.get("provider_label", r["provider"]) for _, run, _, _ in rows for r in records(run)})
    colour = {label: plt.cm.tab10(i % 10) for i, label in enumerate(labels)}  # one colour per implementation
    for i, (name, run, dt, metric) in enumerate(rows):
        recs = [r for r in records(run) if r["status"] == "ok" and r["dtype"] == dt]
        for j, (level, mode) in enumerate(panels):
            ax = axes[i][j]
            lines = defaultdict(list)
            for r in recs:
                if r["level"] == level and r["mode"] == mode and r.get(metric):
                    value = r[metric] if metric == "time_ms" else r[metric] / 2**20
                    lines[r.get("provider_label", r["provider"])].append((r["edges_total"], value, r["shape"]))
            for label, pts in sorted(lines.items()):
                pts.sort()
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=label, color=colour[label])
                for x, y, shape in pts:
                    ax.annotate(shape, (x, y), fontsize=6, alpha=0.6, xytext=(3, 3), textcoords="offset points")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("edges per call (G x E)")
            ax.set_ylabel("time (ms)" if metric == "time_ms" else "peak memory (MiB)")
            ax.set_title(f"{name}\n{LEVEL_MODE_TITLE[(level, mode)]}, {dt}", fontsize=9)
            ax.grid(True, which="both", alpha=0.3)
            if lines:
                ax.legend(fontsize=7)
            else:
                ax.text(0.5, 0.5, "no cases in this run", ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


# ----------------------------------------------------------------------------- main
def write_docs(runs: list[tuple[str, dict]], md: Path, png: Path | None) -> None:
    plotted = plot(runs, png) if png is not None else False
    plot_name = os.path.relpath(png, md.parent) if plotted else None
    lines = [
        "# Benchmarks",
        "",
        "Generated by `python bench/report.py` from `pytest bench/ --benchmark-json` runs "
        "(raw JSON under `docs/bench/`); how each number is measured: [benchmarking.md](benchmarking.md).",
        "",
    ]
    heads = [h for _, run in runs for h in headline(run)]
    if heads:
        lines += ["## Headline", ""] + [f"- {h}" for h in heads] + [""]
    if plot_name:
        lines += [f"![time and memory against graph size]({plot_name})", ""]
    for _, run in runs:
        lines += run_header(run) + tables(run)
    md.parent.mkdir(parents=True, exist_ok=True)
    tmp = md.with_suffix(".md.tmp")
    tmp.write_text("\n".join(lines))
    os.replace(tmp, md)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="*", type=Path, help="--benchmark-json or --bench-record files of `pytest bench/`")
    p.add_argument("--store", type=Path, default=ROOT / "docs" / "bench", help="where runs are kept, one per device")
    p.add_argument("--no-store", action="store_true", help="render only the given runs; store nothing")
    p.add_argument("--md", type=Path, default=ROOT / "docs" / "benchmarks.md")
    p.add_argument("--plot", type=Path, default=ROOT / "docs" / "benchmarks.png")
    args = p.parse_args(argv)

    given = merge([load(path) for path in args.runs])
    if args.no_store:
        if not given:
            p.error("--no-store needs at least one run")
        runs = [(device_slug(run), run) for run in given]
    else:
        args.store.mkdir(parents=True, exist_ok=True)
        for run in given:
            dest = args.store / f"{device_slug(run)}.json"
            tmp = dest.with_suffix(".json.tmp")
            for b in run["benchmarks"]:
                b["stats"].pop("data", None)  # per-round times: the summary stats stay
            tmp.write_text(json.dumps(run, indent=1))
            os.replace(tmp, dest)
            print(f"stored {dest}")
        runs = [(f.stem, load(f)) for f in sorted(args.store.glob("*.json"))]
        if not runs:
            p.error(f"no runs given and none stored in {args.store}")
    write_docs(runs, args.md, args.plot)
    print(f"wrote {args.md}" + (f" and {args.plot}" if args.plot.exists() else ""))
    for _, run in runs:
        for line in headline(run):
            print("headline:", line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
