"""The ``followup`` command line (typer)."""

from __future__ import annotations

import json
import logging
import sys
from enum import Enum
from pathlib import Path

import typer

from followup import __version__
from followup.errors import FollowupError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="followup: residual-tumour assessment on follow-up breast MRI after cryoablation.",
)


class Scenario(str, Enum):
    complete = "complete"
    residual = "residual"
    early = "early"
    confounder = "confounder"


class Vendor(str, Enum):
    per_phase = "per-phase"
    single_series = "single-series"
    sagittal = "sagittal"


class Size(str, Enum):
    small = "small"
    full = "full"


def _fail(err: FollowupError) -> None:
    typer.secho(f"error [{err.code}]: {err.message}", err=True, fg=typer.colors.RED)
    raise typer.Exit(code=2)


@app.callback()
def main(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log progress to stderr.")) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)


@app.command()
def version() -> None:
    """Print the product and algorithm version."""
    typer.echo(__version__)


@app.command()
def synth(
    out: Path = typer.Option(..., "--out", help="Output folder (baseline/, followup/, procedure.json, truth.json)."),
    scenario: Scenario = typer.Option(Scenario.complete, "--scenario"),
    seed: int = typer.Option(0, "--seed", min=0),
    vendor: Vendor = typer.Option(Vendor.per_phase, "--vendor", help="DICOM layout of the dynamic series."),
    size: Size = typer.Option(Size.small, "--size", help="small ~128x128x48 (tests), full ~448x448x160."),
) -> None:
    """Write a synthetic baseline/follow-up DCE-MRI pair with its procedure record and ground truth."""
    from followup.synth import generate_pair

    if out.exists() and any(out.iterdir()):
        typer.secho(f"error: {out} is not empty; choose a new folder", err=True, fg=typer.colors.RED)
        raise typer.Exit(code=2)
    truth = generate_pair(out, scenario.value, seed, vendor.value, size.value)
    n_files = sum(s["files"] for st in truth["studies"].values() for s in st["series"])
    typer.echo(
        f"wrote {n_files} DICOM files to {out} (scenario={scenario.value}, seed={seed}, "
        f"vendor={vendor.value}, size={size.value}); residual={truth['residual']}, "
        f"days since procedure={truth['days_since_procedure']}"
    )


@app.command()
def inspect(
    directory: Path = typer.Argument(..., help="Folder of DICOM files (searched recursively)."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    nifti: Path | None = typer.Option(None, "--nifti", help="Write each DCE phase as NIfTI into this folder."),
) -> None:
    """Find the DCE series of each study in a folder, order its phases and describe its geometry."""
    from followup.dicom import inspect_directory, load_dce_study, write_nifti

    try:
        summary = inspect_directory(directory)
        written: list[str] = []
        if nifti is not None:
            study = load_dce_study(directory)
            written = [str(p) for p in write_nifti(study, nifti)]
            summary["nifti"] = written
    except FollowupError as err:
        _fail(err)
        return
    if as_json:
        typer.echo(json.dumps(summary, indent=2, default=str))
        return
    typer.echo(format_inspect_summary(summary))


@app.command()
def analyze(
    baseline: Path = typer.Option(..., "--baseline", help="Folder of the baseline (pre-procedure) MRI study."),
    followup: Path = typer.Option(..., "--followup", help="Folder of the follow-up MRI study."),
    procedure: Path = typer.Option(..., "--procedure", help="procedure.json (the procedure record)."),
    out: Path = typer.Option(..., "--out", help="Folder for report.json and report.html."),
) -> None:
    """Assess residual tumour on a follow-up study: registration, enhancement, probability, reports.

    Exit status 0 whenever a report was written (deferred and failed analyses included);
    2 when no report could be made.
    """
    from followup.analyze import run_analysis

    try:
        result = run_analysis(baseline, followup, procedure, out)
    except FollowupError as err:
        _fail(err)
        return
    r = result.report
    if r["status"] == "complete":
        lo, hi = r["probability_interval"]
        conf = " (LOW CONFIDENCE)" if r["confidence"] == "low" else ""
        typer.echo(f"residual-tumour probability {r['residual_probability']:.0%} "
                   f"(95% interval {lo:.0%}-{hi:.0%}){conf}; "
                   f"{len(r['findings']['suspicious_foci'])} suspicious focus/foci")
    else:
        typer.secho(f"{r['status']}: {r['reason']}", err=True, fg=typer.colors.YELLOW)
    for rec in r["recommendations"]:
        typer.echo(f"  recommendation [{rec['code']}]: {rec['text']}")
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


if __name__ == "__main__":  # pragma: no cover
    app()
