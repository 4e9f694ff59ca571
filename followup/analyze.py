"""``followup analyze``: read the studies and the procedure record, assess, write the reports.

The I/O edge around ``followup.pipelines.assess``. Writes ``OUT/report.json`` and
``OUT/report.html`` (atomically: temp file + rename). A report is written for every analysable
follow-up, deferred and failed ones included; when no report can be made (unreadable follow-up,
invalid record, record of another patient) a ``FollowupError`` says why and nothing is written.
"""

from __future__ import annotations

import io
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataset import Dataset

from followup.dicom import load_dce_study
from followup.dicom.study import DCEStudy
from followup.errors import FollowupError
from followup.pipelines.assess import ALGORITHM_VERSION, Assessment, assess, check_inputs
from followup.procedure import load_procedure
from followup.reporting import key_images
from followup.reporting.encapsulated_pdf import encapsulated_pdf
from followup.reporting.fhir_report import build_fhir_bundle
from followup.reporting.html_report import render_html
from followup.reporting.json_report import PatientIdentity, build_report
from followup.reporting.pdf_report import render_pdf
from followup.reporting.seg import build_seg, roi_offset
from followup.reporting.sr import build_sr
from followup.reporting.uids import derived_uid

log = logging.getLogger(__name__)
# The DICOM objects that go back to PACS, by name -> file in the output folder.
DICOM_FILES = {"sr": "sr.dcm", "seg": "seg.dcm", "pdf": "report-pdf.dcm"}


@dataclass(frozen=True)
class AnalysisOutput:
    report: dict
    paths: dict[str, Path]
    assessment: Assessment
    timings_s: dict[str, float]


def patient_identity(ds: pydicom.Dataset) -> PatientIdentity:
    """Identity from a follow-up image header (never invented)."""
    return PatientIdentity(str(ds.get("PatientID", "")), str(ds.get("PatientName", "")),
                           str(ds.get("PatientBirthDate", "")), str(ds.get("PatientSex", "")))


def write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o640)  # reports carry patient identity: owner and group only
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _images(a: Assessment, baseline: DCEStudy | None, followup: DCEStudy, radius: float,
            margin: float, centre_b) -> list[tuple[str, bytes]]:
    if a.status != "complete" or a.segmentation is None:
        return []
    out = []
    if baseline is not None and len(baseline.phases) > 1:
        out.append(("Baseline: the treated tumour (subtraction, 1st post-contrast minus pre-contrast); "
                    "orange: tumour, dashed blue: tumour + margin",
                    key_images.baseline_image(baseline.phases[0].volume, baseline.phases[1].volume,
                                              centre_b, radius, margin)))
    for title, png in key_images.followup_images(a, radius, margin):
        out.append((title + "; green: ablation zone, red: suspicious foci", png))
    curves = key_images.curves_image(a, [p.time_s for p in followup.phases])
    if curves is not None:
        out.append(("Enhancement over time of the rim and of each suspicious focus", curves))
    return out


def _dicom_bytes(ds) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _reference(inst) -> Dataset:
    """What an SR evidence item needs of an image: its four UIDs (from the ingestion scan)."""
    ds = Dataset()
    ds.StudyInstanceUID = inst.study_uid
    ds.SeriesInstanceUID = inst.series_uid
    ds.SOPInstanceUID = inst.sop_uid
    ds.SOPClassUID = inst.sop_class_uid
    return ds


def _source_headers(followup: DCEStudy, full_uids: set[str],
                    known: dict[Path, Dataset] | None = None) -> dict[str, Dataset]:
    """The follow-up's DCE images by SOP Instance UID, in file order (the last file of a UID wins,
    as a re-read would): full headers for ``full_uids`` and the first image (the SR copies patient
    and study from it), UID references from the scan for the others."""
    if not followup.instances:  # a study built without its scan records: read every header
        headers: dict[str, Dataset] = {}
        for path in followup.source_paths:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            headers[str(ds.SOPInstanceUID)] = ds
        return headers
    last = {}
    for inst in followup.instances:
        last[inst.sop_uid] = inst
    first_uid = next(iter(last), None)
    known = dict(known or {})
    out: dict[str, Dataset] = {}
    for uid, inst in last.items():
        if uid in full_uids or uid == first_uid:
            if inst.path not in known:
                known[inst.path] = pydicom.dcmread(inst.path, stop_before_pixels=True)
            out[uid] = known[inst.path]
        else:
            out[uid] = _reference(inst)
    return out


def dicom_outputs(report: dict, a: Assessment, followup: DCEStudy, tumour_radius_mm: float,
                  margin_mm: float, revision: int = 1,
                  known_headers: dict[Path, Dataset] | None = None) -> dict:
    """The DICOM objects that go back to PACS: SEG (complete analyses on single-frame sources)
    and SR (always), with UIDs derived from the study and the algorithm version.

    Full headers are read only for the images the SEG derives from (the analysis box's slices of
    the pre-contrast phase) and the SR's first evidence item; ``known_headers`` (by path) are
    headers already read."""
    study_uid = followup.study_uid
    out: dict = {}
    pre = followup.phases[0]
    single_frame = len(set(pre.sop_instance_uids)) == len(pre.sop_instance_uids)
    seg_wanted = a.status == "complete" and a.segmentation is not None and a.roi is not None
    slab: set[str] = set()
    if seg_wanted and single_frame:
        k0 = int(roi_offset(pre.volume, a.roi.grid)[2])  # type: ignore[union-attr]
        slab = set(pre.sop_instance_uids[max(k0, 0):k0 + a.roi.grid.shape[2]])  # type: ignore[union-attr]
    headers = _source_headers(followup, slab, known_headers)
    evidence = list(headers.values())
    if seg_wanted:
        if single_frame:
            out["seg"] = build_seg(a, pre.volume, [headers[u] for u in pre.sop_instance_uids],
                                   tumour_radius_mm=tumour_radius_mm, margin_mm=margin_mm,
                                   series_uid=derived_uid(study_uid, "seg-series", f"r{revision}"),
                                   sop_uid=derived_uid(study_uid, "seg", f"r{revision}"))
        else:
            a.warnings.append("no DICOM SEG: the follow-up's pre-contrast phase is part of a "
                              "multi-frame object (SEG of multi-frame sources not supported yet)")
            report["warnings"] = list(a.warnings)
    out["sr"] = build_sr(report, evidence, out.get("seg"),
                         series_uid=derived_uid(study_uid, "sr-series", f"r{revision}"),
                         sop_uid=derived_uid(study_uid, "sr", f"r{revision}"))
    return out


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


def run_analysis(baseline_dir: Path, followup_dir: Path, procedure_file: Path,
                 out_dir: Path, revision: int = 1) -> AnalysisOutput:
    """Analyse and write every report. ``revision`` numbers re-analyses of the same study with the
    same algorithm version: each revision gets its own DICOM UIDs (a new version in PACS).

    ``timings_s`` splits the wall time by stage: read_followup, read_baseline (DICOM scan and
    decoding), registration, motion, enhancement, segmentation, scoring (the analysis), then
    key_images, pdf, dicom (SEG, SR, Encapsulated PDF), write (JSON, HTML, FHIR, every file
    written), and total."""
    clock = StageClock()
    t0 = time.perf_counter()
    with clock.stage("read_followup"):
        record = load_procedure(procedure_file)
        followup = load_dce_study(followup_dir)
        source_header = pydicom.dcmread(followup.source_paths[0], stop_before_pixels=True)
    patient = patient_identity(source_header)
    check_inputs(None, followup, record)
    days = (followup.study_date - record.procedure_date).days  # type: ignore[operator]
    baseline, problem = None, None
    if days >= 21:
        with clock.stage("read_baseline"):
            try:
                # the analysis reads the baseline's pre-contrast and first post-contrast phases
                baseline = load_dce_study(baseline_dir, decode_phases=2)
            except FollowupError as err:
                problem = f"baseline study unusable [{err.code}]: {err.message}"
                log.warning("baseline unusable for study %s: %s", followup.study_uid, err.code)
    a = assess(baseline, followup, record, problem, run_stage=clock.run)
    with clock.stage("write"):
        report = build_report(a, record, followup, baseline, patient)
    radius = record.lesion.diameter_mm / 2.0
    with clock.stage("key_images"):
        images = _images(a, baseline, followup, radius, record.margin_mm, record.lesion.center_lps_mm)
    paths = {"json": out_dir / "report.json", "html": out_dir / "report.html",
             "pdf": out_dir / "report.pdf", "fhir": out_dir / "report.fhir.json"}
    with clock.stage("pdf"):
        pdf = render_pdf(report, images)
    report["revision"] = revision
    with clock.stage("dicom"):
        dicom_objects = dicom_outputs(report, a, followup, record.lesion.diameter_mm / 2.0,
                                      record.margin_mm, revision,
                                      known_headers={followup.source_paths[0]: source_header})
        dicom_objects["pdf"] = encapsulated_pdf(
            pdf, source_header,
            series_uid=derived_uid(followup.study_uid, "pdf-series", f"r{revision}"),
            sop_uid=derived_uid(followup.study_uid, "pdf", f"r{revision}"),
            software_version=ALGORITHM_VERSION)
        dicom_bytes = {name: _dicom_bytes(ds) for name, ds in dicom_objects.items()}
    with clock.stage("write"):
        report["outputs"] = {name: {"file": DICOM_FILES[name],
                                    "series_instance_uid": str(ds.SeriesInstanceUID),
                                    "sop_instance_uid": str(ds.SOPInstanceUID),
                                    "sop_class_uid": str(ds.SOPClassUID)}
                             for name, ds in dicom_objects.items()}
        for name, data in dicom_bytes.items():
            paths[f"{name}_dcm" if name == "pdf" else name] = out_dir / DICOM_FILES[name]
            write_atomic(out_dir / DICOM_FILES[name], data)
        write_atomic(paths["pdf"], pdf)
        write_atomic(paths["fhir"],
                     (json.dumps(build_fhir_bundle(report, pdf=pdf), indent=2) + "\n").encode())
        write_atomic(paths["json"], (json.dumps(report, indent=2) + "\n").encode("utf-8"))
        write_atomic(paths["html"], render_html(report, images).encode("utf-8"))
    timings = clock.timings
    timings["total"] = time.perf_counter() - t0
    log.info("study %s: %s in %.1f s", followup.study_uid, a.status, timings["total"])
    return AnalysisOutput(report, paths, a, timings)
