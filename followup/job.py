"""One analysis job, the same for the command line and the service worker.

Stages, each a function of objects (no temporary files, no sentinel paths):

1. :func:`load_inputs` (I/O): the follow-up study and its first header, the checks that the
   record belongs to it (:func:`~followup.pipelines.assess.check_inputs`, once), then the
   baseline, which is not read at all for a study taken too early to be analysed;
2. :func:`analyse`: :func:`followup.pipelines.assess.assess`, pure;
3. :func:`build`: :func:`~followup.reporting.plan.plan_outputs` decides which DICOM objects are
   made and every warning, then the finished, frozen :class:`~followup.reporting.model.Report`
   is built, its outputs' UIDs and revision included;
4. :func:`render`: every format (JSON, HTML, PDF, FHIR, SR, SEG, Encapsulated PDF) to bytes,
   from that same report;
5. :func:`write`: every file, atomically (:mod:`followup.atomic`).

:func:`run_job` runs them in order. A report is written for every analysable follow-up, deferred
and failed ones included: an unexpected internal error in the analysis or in the reports gives a
``failed`` report that names it (exception type and message; the traceback goes to the log at
ERROR), never a crash. When no report can be made (unreadable follow-up, record of another
patient) a ``FollowupError`` says why and nothing is written.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from followup.atomic import write_atomic
from followup.dicom import load_dce_study
from followup.dicom.study import DCEStudy
from followup.errors import FollowupError
from followup.evidence import MIN_DAYS_AFTER_PROCEDURE
from followup.pipelines.assess import AnalysisError, Assessment, assess, check_inputs, failed
from followup.pipelines.surveillance import assess_with_priors
from followup.procedure import ProcedureRecord
from followup.reporting import key_images
from followup.reporting.build import build_report, patient_identity
from followup.reporting.dicom_objects import dicom_bytes, render_dicom
from followup.reporting.fhir_report import build_fhir_bundle
from followup.reporting.html_report import render_html
from followup.reporting.longitudinal_images import longitudinal_images
from followup.reporting.model import Report
from followup.reporting.pdf_report import render_pdf
from followup.reporting.plan import plan_outputs
from followup.reporting.supersede import Predecessor, supersedes

log = logging.getLogger(__name__)
# Files of the readable and data reports, by kind; the DICOM objects' files are in the report's
# outputs (kinds "seg", "sr" and "pdf_dcm" for the Encapsulated PDF).
REPORT_FILES = {"json": "report.json", "html": "report.html", "pdf": "report.pdf",
                "fhir": "report.fhir.json"}
REPORT_FILE_MODE = 0o640  # reports carry patient identity: owner and group only
MAX_ERROR_MESSAGE = 200  # characters of an internal error's message in a failed report


class StageClock:
    """Seconds per named stage, accumulated (the orchestration times; the pipeline stays pure)."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        t = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - t

    def run(self, name: str, fn: Callable[..., Any], *args: Any) -> Any:
        with self.stage(name):
            return fn(*args)


@dataclass(frozen=True)
class Inputs:
    """What an analysis reads: the record, the studies, and the follow-up's first header."""

    record: ProcedureRecord
    followup: DCEStudy
    source_header: Dataset  # patient and study attributes of the follow-up (never invented)
    days: int  # from the procedure to the follow-up
    baseline: DCEStudy | None
    baseline_problem: str | None  # why there is no baseline, when there is none
    priors: tuple[DCEStudy, ...] = ()  # earlier follow-ups of the patient (issue 14), by date


@dataclass(frozen=True)
class JobResult:
    report: Report
    paths: dict[str, Path]  # files written, by kind ("json","html","pdf","fhir","sr","seg","pdf_dcm")
    timings_s: dict[str, float]  # per stage + "total"
    assessment: Assessment | None = None  # the analysis behind the report (masks, images)


def _read_baseline(baseline_dir: Path | None, followup: DCEStudy) -> tuple[DCEStudy | None, str | None]:
    if baseline_dir is None:
        return None, "no baseline study"
    try:
        # the analysis reads the baseline's pre-contrast and first post-contrast phases
        return load_dce_study(baseline_dir, decode_phases=2), None
    except FollowupError as err:
        log.warning("baseline unusable for study %s: %s", followup.study_uid, err.code)
        return None, f"baseline study unusable [{err.code}]: {err.message}"


def load_inputs(followup_dir: Path, baseline_dir: Path | None, record: ProcedureRecord,
                clock: StageClock | None = None, prior_dirs: Sequence[Path] = (), *,
                strict_priors: bool = True) -> Inputs:
    """Read the follow-up, check it against the record, then read the baseline (``baseline_dir``
    None: there is none) and the earlier follow-ups (``prior_dirs``, each checked:
    :func:`read_priors`) when the study is late enough to be analysed."""
    clock = clock or StageClock()
    with clock.stage("read_followup"):
        followup = load_dce_study(followup_dir)
        header = pydicom.dcmread(followup.source_paths[0], stop_before_pixels=True)
    days = check_inputs(followup, record)
    baseline, problem = None, None
    if days >= MIN_DAYS_AFTER_PROCEDURE:
        with clock.stage("read_baseline"):
            baseline, problem = _read_baseline(baseline_dir, followup)
    priors: tuple[DCEStudy, ...] = ()
    if prior_dirs and days >= MIN_DAYS_AFTER_PROCEDURE:
        with clock.stage("read_priors"):
            priors = read_priors(prior_dirs, followup, record, strict=strict_priors)
    return Inputs(record, followup, header, days, baseline, problem, priors)


def read_priors(prior_dirs: Sequence[Path], followup: DCEStudy, record: ProcedureRecord, *,
                strict: bool = True) -> tuple[DCEStudy, ...]:
    """Each earlier follow-up, refused (``FollowupError``, nothing written) when it cannot be read or
    is not an earlier follow-up of the record's patient: another patient, dated before the
    procedure (a baseline) or after the current follow-up, or the current study itself.
    ``strict=False`` (the service, whose priors come from the registry): such a study is left out
    (logged by its folder's name, the Study Instance UID) and the others are used."""
    out = []
    for d in prior_dirs:
        try:
            out.append(_read_prior(Path(d), followup, record))
        except FollowupError as err:
            if strict:
                raise
            log.warning("earlier follow-up %s of study %s left out [%s]", Path(d).name, followup.study_uid, err.code)
    return tuple(sorted(out, key=lambda p: (p.study_date or dt.date.min, p.study_uid)))


def _read_prior(d: Path, followup: DCEStudy, record: ProcedureRecord) -> DCEStudy:
    prior = load_dce_study(d)
    if prior.patient_id.strip() != record.patient_id.strip():
        raise AnalysisError("a --prior study's Patient ID does not match the procedure record's",
                            code="prior-patient-mismatch")
    if prior.study_uid == followup.study_uid:
        raise AnalysisError("a --prior study is the follow-up itself", code="prior-is-followup")
    if prior.study_date is None or followup.study_date is None or \
            not record.procedure_date <= prior.study_date <= followup.study_date:
        raise AnalysisError(f"a --prior study ({prior.study_date}) is not dated between the procedure "
                            f"({record.procedure_date}) and the follow-up ({followup.study_date})",
                            code="prior-date")
    return prior


def internal_error_reason(stage: str, exc: BaseException) -> str:
    """The reason a failed report gives for an unexpected internal error: the exception's type
    and the first line of its message (at most 200 characters; the analysis' own messages carry
    no patient data), never a traceback."""
    message = (str(exc).strip().splitlines() or [""])[0][:MAX_ERROR_MESSAGE]
    return f"internal error in the {stage} ({type(exc).__name__}{': ' + message if message else ''})"


def _log_internal_error(stage: str, inputs: Inputs) -> None:
    # the study's UID only (no patient identifiers); the traceback for the developers
    log.error("internal error in the %s of study %s: a failed report is written instead",
              stage, inputs.followup.study_uid, exc_info=True)


def analyse(inputs: Inputs, clock: StageClock | None = None) -> Assessment:
    """The assessment (pure): registration, motion, enhancement, segmentation, scoring.

    An unexpected internal error (any exception from the image stages that is not a refusal of
    the inputs, ``AnalysisError``) gives a ``failed`` assessment that says so (type and message),
    its traceback logged at ERROR: an analysable study always gets a report."""
    clock = clock or StageClock()
    try:
        if inputs.priors:
            return assess_with_priors(inputs.baseline, inputs.followup, inputs.priors, inputs.record,
                                      inputs.baseline_problem, run_stage=clock.run, days=inputs.days)
        return assess(inputs.baseline, inputs.followup, inputs.record, inputs.baseline_problem,
                      run_stage=clock.run, days=inputs.days)
    except AnalysisError:
        raise
    except Exception as exc:  # noqa: BLE001  (any internal error: a failed report, not a crash)
        _log_internal_error("analysis", inputs)
        return failed(inputs.record, inputs.days, internal_error_reason("analysis", exc))


def build(a: Assessment, inputs: Inputs, *, revision: int = 1, predecessor: Predecessor | None = None) -> Report:
    """Decide the outputs and every warning, then build the finished report (``predecessor``: the
    earlier report of the study this revision supersedes)."""
    plan = plan_outputs(a, inputs.followup, revision)
    return build_report(a, inputs.record, inputs.followup, inputs.baseline,
                        patient_identity(inputs.source_header), plan, revision=revision,
                        supersedes=supersedes(predecessor, inputs.followup))


def report_images(a: Assessment, inputs: Inputs) -> list[tuple[str, bytes]]:
    """Key images (caption, PNG) of a complete analysis: the MIP of the treated breast, a zoomed
    view of each finding, the baseline tumour, the follow-up slice, the enhancement curves; none
    otherwise."""
    if a.status != "complete" or a.segmentation is None:
        return []
    lesion, margin = inputs.record.lesion, inputs.record.margin_mm
    radius = lesion.diameter_mm / 2.0
    out = []
    # --- key images a breast radiologist expects (issue 24 item 7): the MIP first, then a zoomed
    # view of each finding, on the whole follow-up volumes
    phases = inputs.followup.phases
    breast = a.breast
    nipple = breast.nipple.position_lps if breast is not None and breast.nipple.found else None
    mip = key_images.mip_key_image(a, phases[0].volume, phases[1].volume, inputs.record.laterality,
                                   inputs.followup.laterality, nipple) if len(phases) > 1 else None
    out += ([mip] if mip is not None else []) + key_images.finding_images(
        a, breast.location_text if breast is not None else None)
    # --- end of the radiologist's key images
    baseline = inputs.baseline
    if baseline is not None and len(baseline.phases) > 1:
        out.append(("Baseline: the treated tumour (subtraction, 1st post-contrast minus pre-contrast); "
                    "orange: tumour, dashed blue: tumour + margin",
                    key_images.baseline_image(baseline.phases[0].volume, baseline.phases[1].volume,
                                              np.asarray(lesion.center_lps_mm, float), radius, margin)))
    for title, png in key_images.followup_images(a, radius, margin):
        out.append((title + "; green: ablation zone, red: suspicious foci", png))
    curves = key_images.curves_image(a, [p.time_s for p in inputs.followup.phases])
    if curves is not None:
        out.append(("Enhancement over time of the rim and of each suspicious focus", curves))
    return out


def render(report: Report, a: Assessment, inputs: Inputs,
           clock: StageClock | None = None) -> dict[str, bytes]:
    """Every file of the report as bytes, by kind, all from the same finished ``report``."""
    clock = clock or StageClock()
    with clock.stage("key_images"):
        images = report_images(a, inputs) + longitudinal_images(a, report.longitudinal)
    with clock.stage("pdf"):
        pdf = render_pdf(report, images)
    with clock.stage("dicom"):
        objects = render_dicom(report, a, inputs.followup, inputs.source_header, pdf)
        files = {("pdf_dcm" if name == "pdf" else name): dicom_bytes(ds) for name, ds in objects.items()}
    with clock.stage("write"):
        files["pdf"] = pdf
        files["fhir"] = (json.dumps(build_fhir_bundle(report, pdf=pdf), indent=2) + "\n").encode()
        files["json"] = report.to_json_bytes()
        files["html"] = render_html(report, images).encode("utf-8")
    return files


def file_names(report: Report) -> dict[str, str]:
    """Each kind's file name in the report folder."""
    dicom = {("pdf_dcm" if name == "pdf" else name): info.file for name, info in report.outputs.items()}
    return {**dicom, **REPORT_FILES}


def write(report: Report, files: dict[str, bytes], out_dir: Path) -> dict[str, Path]:
    """Write every file atomically (the DICOM objects first, ``report.json`` and ``report.html``
    last); the paths by kind."""
    names = file_names(report)
    paths = {}
    for kind, data in files.items():  # render's order: DICOM, pdf, fhir, json, html
        paths[kind] = write_atomic(out_dir / names[kind], data, mode=REPORT_FILE_MODE)
    return paths


def run_job(followup_dir: Path, baseline_dir: Path | None, record: ProcedureRecord,
            out_dir: Path, *, revision: int = 1, predecessor: Predecessor | None = None,
            priors: Sequence[Path] = (), strict_priors: bool = True) -> JobResult:
    """Analyse one follow-up and write every report. ``revision`` numbers re-analyses of the
    same study with the same algorithm version: each revision gets its own DICOM UIDs.
    ``predecessor``: the study's earlier report that this one supersedes (its SR becomes the new
    SR's predecessor document; the readable reports say so), None for a first report.
    ``priors``: folders of the patient's earlier follow-ups, compared with this one (issue 14);
    ``strict_priors`` False leaves out one that cannot be used instead of refusing the job.

    ``timings_s`` splits the wall time by stage: read_followup, read_baseline (DICOM scan and
    decoding), registration, motion, enhancement, segmentation, scoring (the analysis), then
    key_images, pdf, dicom (SEG, SR, Encapsulated PDF), write (the report built, JSON, HTML,
    FHIR, every file written), and total."""
    clock = StageClock()
    t0 = time.perf_counter()
    inputs = load_inputs(Path(followup_dir), None if baseline_dir is None else Path(baseline_dir),
                         record, clock, priors, strict_priors=strict_priors)
    a = analyse(inputs, clock)

    def report_of(a: Assessment) -> tuple[Report, dict[str, bytes]]:
        with clock.stage("write"):
            report = build(a, inputs, revision=revision, predecessor=predecessor)
        return report, render(report, a, inputs, clock)

    try:
        report, files = report_of(a)
    except Exception as exc:  # noqa: BLE001
        if a.status == "failed":
            raise  # the failed report itself cannot be made: nothing to fall back to
        # a complete or deferred result that cannot be reported (a value the report model
        # refuses, a renderer's error): the study still gets a report, a failed one
        _log_internal_error("report", inputs)
        a = failed(inputs.record, inputs.days, internal_error_reason("report", exc))
        report, files = report_of(a)
    with clock.stage("write"):
        paths = write(report, files, Path(out_dir))
    timings = clock.timings
    timings["total"] = time.perf_counter() - t0
    log.info("study %s: %s in %.1f s", inputs.followup.study_uid, report.status, timings["total"])
    return JobResult(report, paths, timings, a)


__all__ = [
    "REPORT_FILES",
    "Inputs",
    "JobResult",
    "StageClock",
    "analyse",
    "build",
    "file_names",
    "internal_error_reason",
    "load_inputs",
    "render",
    "report_images",
    "run_job",
    "write",
]
