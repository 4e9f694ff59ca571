"""Longitudinal surveillance benchmark (issue 14) on synthetic series no test uses.

Series: ``followup synth --scenario surveillance`` (baseline + 3-5 follow-ups at about 1, 6, 12, 24,
36 months, each with its own repositioning and, without ``--vendor``, its own drawn layout; a
seed-chosen share recur at month 12 or 24 as a new nodule or a growing zone), seeds 95000 and up
(tests use small seeds). Each follow-up is analysed as the service does when it arrives: against
the baseline, with every earlier follow-up as a prior
(:func:`followup.pipelines.surveillance.assess_with_priors`; each study assessed once and reused
as a prior, as the registry's earlier reports would be).

Reported: trend called correctly per time point that has an earlier one (recurrence present: the
trend is ``growing`` or ``new-enhancement``; absent: ``involuting`` or ``stable``); every
recurrence >= 5 mm flagged (trend raising) at the first time point where it exists; the zone-volume
error (measured against the truth's ellipsoid) median, by whether the rim is present.

``--simulator independent`` draws the series from the independently written simulator instead
(``benchmarks/independent_sim/series.py``: baseline + follow-ups at about 1, 6, 12, 24 and, in half,
36 months, the zone involuting, its rim fading and absent in most exams from 12 months, a
recurrence nodule in about a third of the series; seeds 99600 and up, its own range; its zone
volume truth is the drawn zone's exact volume) and writes results/surveillance-independent.md.

Usage: .venv/bin/python benchmarks/surveillance.py [--series 20] [--size small] [--workers 2]
       [--simulator ours|independent]
Writes benchmarks/results/surveillance.md (surveillance-independent.md) and prints it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from followup.dicom import load_dce_study
from followup.dicom.study import DCEStudy
from followup.pipelines.assess import Assessment
from followup.pipelines.longitudinal import RAISING
from followup.pipelines.surveillance import assess_with_priors
from followup.procedure import load_procedure
from followup.testing.bench import write_results

try:
    from benchmarks.independent_sim import FIRST_SERIES_BENCHMARK_SEED, generate_series
except ModuleNotFoundError:  # run as a script (python benchmarks/surveillance.py): benchmarks/ is on sys.path
    from independent_sim import FIRST_SERIES_BENCHMARK_SEED, generate_series  # type: ignore[no-redef,import-not-found]

HERE = Path(__file__).resolve().parent
FIRST_SEED = 95000
MIN_RECURRENCE_MM = 5.0
RIM_ABSENT_TARGET = 0.20  # issue 24: zone volume error median at most 20 % where the rim is absent


def generate(d: Path, seed: int, size: str, simulator: str) -> dict[str, Any]:
    """One series' folders and truth (both simulators write ``time_points`` with the keys read here)."""
    if simulator == "independent":
        return generate_series(d, seed, small=size == "small")
    from followup.synth.surveillance import generate_surveillance

    return generate_surveillance(d, seed, None, size)


def run_series(seed: int, size: str, work: str, simulator: str = "ours") -> dict[str, Any]:
    """Generate one series and analyse each follow-up with its priors; one row per time point."""
    d = Path(work) / f"s{seed}"
    t0 = time.perf_counter()
    truth = generate(d, seed, size, simulator)
    t_gen = time.perf_counter() - t0
    record = load_procedure(d / "procedure.json")
    baseline = load_dce_study(d / "baseline")
    studies: list[DCEStudy] = []
    known: dict[str, Assessment] = {}
    rows = []
    t1 = time.perf_counter()
    for tp in truth["time_points"]:
        study = load_dce_study(d / tp["label"])
        a = assess_with_priors(baseline, study, studies, record, known=known)
        studies.append(study)
        seg = a.segmentation
        lon = a.longitudinal
        rows.append({
            "seed": seed, "label": tp["label"], "month": tp["month"], "layout": tp["layout"],
            "status": a.status, "recurrence": tp["recurrence"], "recurrence_kind": tp["recurrence_kind"],
            "recurrence_size_mm": tp["recurrence_size_mm"], "rim_present": tp["rim"]["present"],
            "truth_volume_ml": tp["ablation_zone"]["volume_ml"],
            "volume_ml": None if seg is None else float(seg.zone.volume_ml),
            "trend": None if lon is None else lon.summary.trend,
            "reason": None if lon is None else lon.summary.reason,
            "biopsy": any(r.code in ("surveillance-biopsy", "peripheral-biopsy", "targeted-biopsy")
                          for r in a.recommendations),
            "mappings": [] if lon is None else [p.measure.mapping for p in lon.priors],
        })
    return {"seed": seed, "rows": rows, "generate_s": t_gen, "analyse_s": time.perf_counter() - t1}


def first_recurrences(rows: list[dict]) -> list[dict]:
    """The first time point of each series' recurrence."""
    out, seen = [], set()
    for r in rows:
        if r["recurrence"] and r["seed"] not in seen:
            seen.add(r["seed"])
            out.append(r)
    return out


def summarise(results: list[dict], wall_s: float, size: str, command: str, simulator: str = "ours") -> str:
    rows = [r for res in results for r in res["rows"]]
    compared = [r for r in rows if r["trend"] is not None]
    correct = [r for r in compared if (r["trend"] in RAISING) == r["recurrence"]]
    firsts = first_recurrences(rows)
    big = [r for r in firsts if (r["recurrence_size_mm"] or 0) >= MIN_RECURRENCE_MM]
    flagged = [r for r in big if r["trend"] in RAISING]
    errs = np.array([abs(r["volume_ml"] / r["truth_volume_ml"] - 1) for r in rows if r["volume_ml"]])
    signed = np.array([r["volume_ml"] / r["truth_volume_ml"] - 1 for r in rows if r["volume_ml"]])
    rim = np.array([r["rim_present"] for r in rows if r["volume_ml"]])
    wrong = [r for r in compared if (r["trend"] in RAISING) != r["recurrence"]]
    missed_small = [r for r in firsts if r not in big and r["trend"] not in RAISING]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    absent = errs[~rim] if (~rim).any() else np.array([])
    title = "" if simulator == "ours" else " on the independent simulator's series"
    lines = [
        f"# Longitudinal surveillance benchmark (issue 14){title}",
        "",
        f"{dt.date.today().isoformat()}; `{command}`; {len(results)} series (seeds {results[0]['seed']}-"
        f"{results[-1]['seed']}), {len(rows)} follow-ups, size {size}; machine {platform.machine()} "
        f"{os.cpu_count()} CPUs, load {load:.1f}; wall {wall_s / 60:.1f} min "
        f"(generation {sum(r['generate_s'] for r in results):.0f} s, analysis "
        f"{sum(r['analyse_s'] for r in results):.0f} s, summed over workers).",
        "",
        "| measure | result | target (issue 14) |",
        "| --- | --- | --- |",
        f"| trend called correctly (growing/new-enhancement vs involuting/stable), time points with an "
        f"earlier follow-up | {len(correct)}/{len(compared)} = {len(correct) / max(len(compared), 1):.1%} | >= 95 % |",
        f"| recurrences >= {MIN_RECURRENCE_MM:g} mm flagged at their first time point | "
        f"{len(flagged)}/{len(big)} | all |",
        f"| recurrences < {MIN_RECURRENCE_MM:g} mm not flagged at their first time point | {len(missed_small)}/"
        f"{len(firsts) - len(big)} | (not required) |",
        f"| zone-volume error, median of absolute (all follow-ups) | {np.median(errs):.1%} "
        f"(signed median {np.median(signed):+.1%}, p90 {np.percentile(errs, 90):.1%}) | <= 10 % |",
        f"| ... rim present / absent | {np.median(errs[rim]):.1%} (n={int(rim.sum())}) / "
        f"{(np.median(errs[~rim]) if (~rim).any() else float('nan')):.1%} (n={int((~rim).sum())}) | |",
        f"| zone-volume error in the rim-absent subset, median of absolute (signed median) | "
        f"{(f'{np.median(absent):.1%} ({np.median(signed[~rim]):+.1%})' if absent.size else 'none')} "
        f"(n={absent.size}) | <= {RIM_ABSENT_TARGET:.0%} (issue 24) |",
        f"| analyses not complete | {sum(r['status'] != 'complete' for r in rows)}/{len(rows)} | |",
        f"| priors not registered to the current follow-up (mapping none) | "
        f"{sum(m == 'none' for r in rows for m in r['mappings'])}/{sum(len(r['mappings']) for r in rows)} | |",
        "",
        "Trend calls by truth:",
        "",
        "| truth | involuting | stable | growing | new-enhancement |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for label, cond in (("no recurrence", lambda r: not r["recurrence"]),
                        ("recurrence: nodule", lambda r: r["recurrence_kind"] == "nodule"),
                        ("recurrence: zone growth", lambda r: r["recurrence_kind"] == "zone-growth")):
        sel = [r for r in compared if cond(r)]
        counts = [sum(r["trend"] == t for r in sel) for t in ("involuting", "stable", "growing", "new-enhancement")]
        lines.append(f"| {label} | " + " | ".join(str(c) for c in counts) + " |")
    lines += ["", "Wrong calls:", ""]
    lines += [f"* seed {r['seed']} {r['label']} (month {r['month']}, {r['layout']}; recurrence "
              f"{r['recurrence_kind']} {r['recurrence_size_mm']} mm): {r['trend']}: {r['reason']}"
              for r in wrong] or ["* none"]
    truth_zone = ("the generator's ellipsoid" if simulator == "ours" else
                  "the independent simulator's drawn zone (its exact volume, rim excluded)")
    lines += ["", f"Measured against truth: the zone is {truth_zone}; the measured one is "
              "the segmentation's non-enhancing region (`segmentation/zone.py`), whose rays stop where the "
              "enhancement rises into the rim (on the subtraction image) or where the pre-contrast "
              "signal leaves the zone's level (no rim). Through 3-4 mm voxels a 1.5-3.5 mm rim is "
              "thinner than the blur (partial volume, interpolation, smoothing): a bump whose steepest "
              "rise lies ~1-2 mm inside the true edge. The edge is placed inside the bump's middle by "
              "half the rim thickness that the blur's bounds (from the voxel size) allow, and moved out "
              "by how far the blur pulls a curved surface in (s^2/R); a rim's thickness below the blur "
              "cannot be measured, so the edge keeps an error of up to about half that bracket "
              "(~0.5-1 mm: 5-15 % of a small zone's volume).", ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--series", type=int, default=20)
    ap.add_argument("--size", default="small", choices=("small", "full"))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--simulator", choices=("ours", "independent"), default="ours",
                    help="ours: followup.synth; independent: benchmarks/independent_sim/series.py")
    ap.add_argument("--first-seed", type=int, default=None,
                    help=f"default {FIRST_SEED} ({FIRST_SERIES_BENCHMARK_SEED} with --simulator independent)")
    ap.add_argument("--out", type=Path, default=None,
                    help="default results/surveillance.md (surveillance-independent.md with --simulator independent)")
    args = ap.parse_args()
    independent = args.simulator == "independent"
    if args.first_seed is None:
        args.first_seed = FIRST_SERIES_BENCHMARK_SEED if independent else FIRST_SEED
    if args.out is None:
        args.out = HERE / "results" / ("surveillance-independent.md" if independent else "surveillance.md")
    seeds = list(range(args.first_seed, args.first_seed + args.series))
    t0 = time.perf_counter()
    n = len(seeds)
    with tempfile.TemporaryDirectory(prefix="surveillance-bench-") as work, \
            ProcessPoolExecutor(max_workers=args.workers) as pool:
        results = list(pool.map(run_series, seeds, [args.size] * n, [work] * n, [args.simulator] * n))
    command = f".venv/bin/python benchmarks/surveillance.py --series {args.series} --size {args.size} " \
              f"--workers {args.workers}" + (" --simulator independent" if independent else "") + \
              (f" --first-seed {args.first_seed}" if args.first_seed not in (FIRST_SEED, FIRST_SERIES_BENCHMARK_SEED)
               else "")
    text = summarise(results, time.perf_counter() - t0, args.size, command, args.simulator)
    (args.out.with_suffix(".json")).write_text(json.dumps(results, indent=1, default=str))
    write_results(args.out, text)


if __name__ == "__main__":
    main()
