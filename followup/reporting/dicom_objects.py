"""The DICOM objects of a finished report, rendered: SEG, SR and Encapsulated PDF.

Which objects exist and their UIDs were decided before (``report.outputs``,
:func:`followup.reporting.plan.plan_outputs`); this module only makes them. Full headers are read
only for the images the SEG derives from (the analysis box's slices of the pre-contrast phase)
and the SR's first evidence item; the other evidence items are UID references from the
ingestion scan.
"""

from __future__ import annotations

import io
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset

from followup.dicom.study import DCEStudy
from followup.pipelines.assess import Assessment
from followup.reporting.encapsulated_pdf import encapsulated_pdf
from followup.reporting.equipment import stamp_product
from followup.reporting.longitudinal_sr import prior_evidence, time_point_groups
from followup.reporting.model import Report
from followup.reporting.seg import build_seg, roi_offset
from followup.reporting.sr import build_sr
from followup.reporting.sr_outlines import Outline, ellipsoid_ring, report_outlines


def _reference(inst) -> Dataset:
    """What an SR evidence item needs of an image: its four UIDs (from the ingestion scan)."""
    ds = Dataset()
    ds.StudyInstanceUID = inst.study_uid
    ds.SeriesInstanceUID = inst.series_uid
    ds.SOPInstanceUID = inst.sop_uid
    ds.SOPClassUID = inst.sop_class_uid
    return ds


def source_headers(followup: DCEStudy, full_uids: set[str],
                   known: dict[Path, Dataset] | None = None) -> dict[str, Dataset]:
    """The follow-up's DCE images by SOP Instance UID, in file order (the last file of a UID wins,
    as a re-read would): full headers for ``full_uids`` and the first image (the SR copies patient
    and study from it), UID references from the scan for the others. ``known``: headers already
    read, by path."""
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


def _seg_sources(a: Assessment, followup: DCEStudy) -> set[str]:
    """SOP Instance UIDs of the pre-contrast slices the analysis box covers."""
    pre = followup.phases[0]
    assert a.roi is not None
    k0 = int(roi_offset(pre.volume, a.roi.grid)[2])
    return set(pre.sop_instance_uids[max(k0, 0):k0 + a.roi.grid.shape[2]])


def time_point_outlines(a: Assessment, followup: DCEStudy, current: dict[str, Outline]) -> dict[str, Outline]:
    """Each time point's ablation-zone outline on its own study's images, by Study Instance UID:
    the current one's from the report, a prior's from its own segmentation."""
    out: dict[str, Outline] = {}
    if "zone" in current:
        out[followup.study_uid] = current["zone"]
    for prior in a.longitudinal.priors if a.longitudinal is not None else ():
        seg = prior.assessment.segmentation
        if seg is None or not prior.study.phases:
            continue
        z = seg.zone
        ring = ellipsoid_ring(prior.study, z.centre_lps, z.axes_mm, z.axis_directions)
        if ring is not None:
            out[prior.study.study_uid] = ring
    return out


def image_library(studies: list[DCEStudy], outlines: list[Outline]) -> list[Dataset]:
    """Full headers of the single-frame images the outlines lie on (the SR's Image Library), in
    first-use order; a multi-frame image's descriptors are per frame, which the library entry
    (TID 1601) does not take: such images are referenced by the outlines and the evidence only."""
    wanted = list(dict.fromkeys(o.sop_instance_uid for o in outlines if o.frame_number is None))
    paths = {inst.sop_uid: inst.path for s in studies for inst in s.instances}
    return [pydicom.dcmread(paths[uid], stop_before_pixels=True) for uid in wanted if uid in paths]


def render_dicom(report: Report, a: Assessment, followup: DCEStudy, source_header: Dataset,
                 pdf: bytes) -> dict[str, Dataset]:
    """Every object of ``report.outputs``, in its order, with the UIDs it names."""
    made = set(report.outputs)
    slab = _seg_sources(a, followup) if "seg" in made else set()
    headers = source_headers(followup, slab, {followup.source_paths[0]: source_header})
    out: dict[str, Dataset] = {}
    if "seg" in made:
        pre = followup.phases[0]
        uids = report.outputs["seg"]
        out["seg"] = build_seg(a, pre.volume, [headers[u] for u in pre.sop_instance_uids],
                               tumour_radius_mm=report.procedure.lesion.diameter_mm / 2.0,
                               margin_mm=report.procedure.margin_mm,
                               series_uid=uids.series_instance_uid, sop_uid=uids.sop_instance_uid)
    priors = [p.study for p in a.longitudinal.priors] if a.longitudinal is not None else []
    outlines = report_outlines(report, followup)
    places = time_point_outlines(a, followup, outlines)
    library = image_library([followup, *priors], [*outlines.values(), *places.values()])
    evidence = list(headers.values()) + prior_evidence(priors)
    listed = {str(ds.SOPInstanceUID) for ds in evidence}
    evidence += [ds for ds in library if str(ds.SOPInstanceUID) not in listed]  # outlined prior images
    out["sr"] = build_sr(report, evidence, out.get("seg"),
                         extra_groups=time_point_groups(report, places), outlines=outlines, library=library)
    uids = report.outputs["pdf"]
    out["pdf"] = stamp_product(encapsulated_pdf(
        pdf, source_header, series_uid=uids.series_instance_uid, sop_uid=uids.sop_instance_uid,
        software_version=report.algorithm.version))
    for name, info in report.outputs.items():  # what the report says is what was made
        ds = out[name]
        if (str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID), str(ds.SOPClassUID)) != (
                info.series_instance_uid, info.sop_instance_uid, info.sop_class_uid):
            raise RuntimeError(f"the {name} object does not match the report's outputs")
    return {name: out[name] for name in report.outputs}


def dicom_bytes(ds: Dataset) -> bytes:
    """A DICOM file (with its meta header) as bytes."""
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


__all__ = ["dicom_bytes", "render_dicom", "source_headers"]
