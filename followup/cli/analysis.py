"""Commands on files, outside the service: ``synth``, ``inspect`` and ``analyze``."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path

import typer

from followup.cli.common import command_settings, fail, install_patient_ref_key
from followup.errors import FollowupError


class Scenario(StrEnum):
    complete = "complete"
    residual = "residual"
    early = "early"
    confounder = "confounder"
    dcis_nme = "dcis-nme"  # DCIS-like non-mass enhancement along a duct from the zone (synth/nme.py)
    surveillance = "surveillance"  # baseline + 3-5 follow-ups (followup/synth/surveillance.py)


class Vendor(StrEnum):
    per_phase = "per-phase"
    single_series = "single-series"
    sagittal = "sagittal"


class Size(StrEnum):
    small = "small"
    full = "full"


def synth(
    out: Path = typer.Option(..., "--out", help="Output folder (baseline/, followup/, procedure.json, truth.json)."),
    scenario: Scenario = typer.Option(Scenario.complete, "--scenario"),
    seed: int = typer.Option(0, "--seed", min=0),
    vendor: Vendor | None = typer.Option(
        None, "--vendor", help="DICOM layout of the dynamic series [default: per-phase; with "
        "--variation wide: drawn for each study]."),
    size: Size = typer.Option(Size.small, "--size", help="small ~128x128x48 (tests), full ~448x448x160."),
    variation: str = typer.Option(
        "standard", "--variation", help="standard, or wide: one seed also draws the anatomy, both "
        "scanners' acquisitions, repositioning up to 30 mm / 15 deg, deformation, phases and "
        "confounders (every drawn parameter in truth.json); clinical: wide plus fat suppression "
        "per study, 1.5/3 T, anisotropic voxels, dose jitter, motion in both studies, lobulated "
        "nodules across the zone edge and fat-necrosis mimics (truth.json objects, scanners)."),
) -> None:
    """Write a synthetic baseline/follow-up DCE-MRI pair with its procedure record and ground truth."""
    from followup.synth import generate_pair
    from followup.synth.case_model import VARIATIONS

    if variation not in VARIATIONS:
        typer.secho(f"error: --variation must be one of {', '.join(VARIATIONS)}", err=True,
                    fg=typer.colors.RED)
        raise typer.Exit(code=2)
    if out.exists() and any(out.iterdir()):
        typer.secho(f"error: {out} is not empty; choose a new folder", err=True, fg=typer.colors.RED)
        raise typer.Exit(code=2)
    if scenario == Scenario.surveillance:
        _synth_surveillance(out, seed, vendor, size, variation)
        return
    layout = vendor.value if vendor is not None else ("per-phase" if variation == "standard" else None)
    truth = generate_pair(out, scenario.value, seed, layout, size.value, variation)
    n_files = sum(s["files"] for st in truth["studies"].values() for s in st["series"])
    layouts = truth.get("layouts")
    shown = layout if layouts is None else f"{layouts['baseline']}/{layouts['followup']}"
    extra = "" if variation == "standard" else f", variation={variation}"
    typer.echo(
        f"wrote {n_files} DICOM files to {out} (scenario={scenario.value}, seed={seed}, "
        f"vendor={shown}, size={size.value}{extra}); residual={truth['residual']}, "
        f"days since procedure={truth['days_since_procedure']}"
    )


def _synth_surveillance(out: Path, seed: int, vendor: Vendor | None, size: Size, variation: str) -> None:
    from followup.synth.surveillance import generate_surveillance

    if variation != "standard":
        typer.secho("error: --scenario surveillance takes the standard variation only", err=True,
                    fg=typer.colors.RED)
        raise typer.Exit(code=2)
    truth = generate_surveillance(out, seed, None if vendor is None else vendor.value, size.value)
    points = ", ".join(f"{tp['label']} month {tp['month']}{' RECURRENCE' if tp['recurrence'] else ''}"
                       for tp in truth["time_points"])
    typer.echo(f"wrote a surveillance series to {out} (seed={seed}, size={size.value}): baseline, {points}")


def inspect(
    directory: Path = typer.Argument(..., help="Folder of DICOM files (searched recursively)."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    nifti: Path | None = typer.Option(None, "--nifti", help="Write each DCE phase as NIfTI into this folder."),
) -> None:
    """Find the DCE series of each study in a folder, order its phases and describe its geometry."""
    from followup.dicom import inspect_directory, load_dce_study, write_nifti

    install_patient_ref_key(command_settings())
    try:
        summary = inspect_directory(directory)
        written: list[str] = []
        if nifti is not None:
            study = load_dce_study(directory)
            written = [str(p) for p in write_nifti(study, nifti)]
            summary["nifti"] = written
    except FollowupError as err:
        fail(err)
        return
    if as_json:
        typer.echo(json.dumps(summary, indent=2, default=str))
        return
    typer.echo(format_inspect_summary(summary))


def analyze(
    baseline: Path = typer.Option(..., "--baseline", help="Folder of the baseline (pre-procedure) MRI study."),
    followup: Path = typer.Option(..., "--followup", help="Folder of the follow-up MRI study."),
    procedure: Path = typer.Option(..., "--procedure", help="procedure.json (the procedure record)."),
    out: Path = typer.Option(..., "--out", help="Folder for report.json and report.html."),
    prior: list[Path] = typer.Option([], "--prior", help="Folder of an earlier follow-up of the same "
                                     "patient, compared with this one (repeat for each)."),
) -> None:
    """Assess residual tumour on a follow-up study: registration, enhancement, probability, reports.

    Exit status 0 whenever a report was written (deferred and failed analyses included);
    2 when no report could be made.
    """
    from followup.job import run_job
    from followup.procedure import load_procedure

    try:
        result = run_job(followup, baseline, load_procedure(procedure), out, priors=prior)
    except FollowupError as err:
        fail(err)
        return
    r = result.report
    if r.status == "complete" and r.probability_interval is not None and r.residual_probability is not None:
        lo, hi = r.probability_interval
        conf = " (LOW CONFIDENCE)" if r.confidence == "low" else ""
        what = "residual or recurrent" if r.question == "recurrence" else "residual"
        typer.echo(f"probability of {what} disease at the ablation site {r.residual_probability:.0%} "
                   f"({r.interval_kind} 95% interval {lo:.0%}-{hi:.0%}){conf}; "
                   f"{len(r.findings.suspicious_foci) if r.findings else 0} suspicious finding(s)")
    else:
        typer.secho(f"{r.status}: {r.reason}", err=True, fg=typer.colors.YELLOW)
    if r.birads is not None:
        typer.echo(f"  BI-RADS {r.birads.category}: {r.birads.label}. {r.birads.management}")
    for c in r.contraindications:
        typer.secho(f"  CONTRAINDICATION: {c.text}", fg=typer.colors.RED)
    if r.longitudinal is not None:
        typer.echo(f"  surveillance: {len(r.longitudinal.time_points)} time points; trend "
                   f"{r.longitudinal.trend or 'none'}: {r.longitudinal.trend_reason}")
    for rec in r.recommendations:
        typer.echo(f"  recommendation [{rec.code}]: {rec.text}")
    typer.echo(f"report: {result.paths['html']} (data: {result.paths['json']}); "
               f"{result.timings_s['total']:.1f} s")


def format_inspect_summary(summary: dict) -> str:
    """Readable text of ``inspect_directory``'s summary (no patient identifiers)."""
    lines = [f"{summary['path']}: {summary['n_files']} files, {summary['n_instances']} DICOM instances"]
    for rej in summary.get("rejected_files", []):
        lines.append(f"  rejected {rej['path']}: {rej['reason']}")
    for patient in summary["patients"]:
        lines.append(f"patient {patient['patient_ref']}")
        for st in patient["studies"]:
            lines.append(f"  study {st['study_uid']} ({st['study_date'] or 'no date'}), "
                         f"{len(st['series'])} series")
            dce = st["dce"]
            if dce is None:
                err = st["error"] or {"code": "no-dce", "message": "no DCE series"}
                lines.append(f"    no usable DCE series [{err['code']}]: {err['message']}")
            else:
                times = ", ".join("?" if t is None else f"{t:.0f}" for t in dce["times_s"])
                lines.append(f"    DCE: {dce['series_description']!r}, {dce['n_phases']} phases "
                             f"ordered by {dce['ordering']} (pre-contrast first), t = [{times}] s")
                spacing = " x ".join(f"{s:.3g}" for s in dce["spacing_mm"])
                matrix = " x ".join(str(m) for m in dce["matrix"])
                lines.append(f"    geometry: {dce['orientation']}, {matrix} voxels of {spacing} mm, "
                             f"origin (LPS) {[round(v, 1) for v in [r[3] for r in dce['affine_lps'][:3]]]}"
                             + (f", laterality {dce['laterality']}" if dce.get("laterality") else ""))
                for ph in dce["phases"]:
                    lines.append(f"      phase {ph['index']}: mean {ph['mean']:.1f}, max {ph['max']:.0f}"
                                 + ("" if ph["contrast"] is None else
                                    f", contrast {'yes' if ph['contrast'] else 'no'}"))
            for ign in st["ignored_series"]:
                lines.append(f"    ignored series {ign['series_number']} {ign['description']!r}: "
                             f"{ign['reason']}")
            for w in st["warnings"]:
                lines.append(f"    warning: {w}")
    if summary.get("nifti"):
        lines.append("NIfTI written: " + ", ".join(summary["nifti"]))
    return "\n".join(lines)
