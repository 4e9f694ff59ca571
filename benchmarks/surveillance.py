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

Usage: .venv/bin/python benchmarks/surveillance.py [--series 20] [--size small] [--workers 2]
Writes benchmarks/results/surveillance.md and prints it.
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
from followup.synth.surveillance import generate_surveillance
from followup.testing.bench import write_results

HERE = Path(__file__).resolve().parent
FIRST_SEED = 95000
MIN_RECURRENCE_MM = 5.0


def run_series(seed: int, size: str, work: str) -> dict[str, Any]:
    """Generate one series and analyse each follow-up with its priors; one row per time point."""
    d = Path(work) / f"s{seed}"
    t0 = time.perf_counter()
    truth = generate_surveillance(d, seed, None, size)
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


def summarise(results: list[dict], wall_s: float, size: str, command: str) -> str:
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
    lines = [
        "# Longitudinal surveillance benchmark (issue 14)",
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
    lines += ["", "Measured against truth: the zone is the generator's ellipsoid; the measured one is "
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
    ap.add_argument("--first-seed", type=int, default=FIRST_SEED)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "surveillance.md")
    args = ap.parse_args()
    seeds = list(range(args.first_seed, args.first_seed + args.series))
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="surveillance-bench-") as work, \
            ProcessPoolExecutor(max_workers=args.workers) as pool:
        results = list(pool.map(run_series, seeds, [args.size] * len(seeds), [work] * len(seeds)))
    command = f".venv/bin/python benchmarks/surveillance.py --series {args.series} --size {args.size} " \
              f"--workers {args.workers}"
    text = summarise(results, time.perf_counter() - t0, args.size, command)
    (args.out.with_suffix(".json")).write_text(json.dumps(results, indent=1, default=str))
    write_results(args.out, text)


if __name__ == "__main__":
    main()
