"""What the SR adds for longitudinal surveillance (issue 14) and for viewers that draw TID 1500.

* Image regions: the ablation zone (its cross-section through its centre, a closed POLYLINE) and
  each suspicious focus (a CIRCLE of its largest diameter) as planar ROI measurement groups
  (TID 1411) with SCOORD on the follow-up's first post-contrast source image through their centre
  (referenced instance), so that viewers that draw TID 1500 (OHIF, Orthanc's Stone) show them
  where they are; the volumetric groups keep referencing the SEG.
* One measurement group per time point (TID 1502 time point context: the study date and its order)
  with the zone volume, long axis, rim thickness and, against the previous follow-up, the volume
  ratio and the new and grown foci; the current one carries the trend as a qualitative
  evaluation. The prior studies are referenced as evidence (their pre-contrast images: highdicom
  lists other studies' instances in the Pertinent Other Evidence Sequence).
Built from the finished report and the studies' geometry only.
"""

from __future__ import annotations

from collections.abc import Sequence

import highdicom as hd
import numpy as np
from highdicom.sr import CodedConcept, ImageRegion, Measurement, QualitativeEvaluation, TrackingIdentifier
from pydicom.dataset import Dataset

from followup.dicom.study import DCEStudy
from followup.reporting import codes
from followup.reporting.model import Report
from followup.reporting.sr import algorithm_identification_sr
from followup.reporting.uids import derived_uid

TIME_POINT_ASSESSMENT = codes.private("FU101", "Ablation zone at a surveillance time point")
VOLUME_RATIO = codes.private("FU102", "Ablation zone volume ratio to the previous follow-up")
NEW_FOCI = codes.private("FU103", "New suspicious foci since the previous follow-up")
GROWN_FOCI = codes.private("FU104", "Grown suspicious foci since the previous follow-up")
TREND = codes.private("FU105", "Surveillance trend")
TREND_VALUES = {t: codes.private(f"FU11{n}", t.capitalize().replace("-", " "))
                for n, t in enumerate(("involuting", "stable", "growing", "new-enhancement"))}
UNIT_COUNT = CodedConcept("{count}", "UCUM", "count")
RING_POINTS = 36


def _algorithm() -> hd.sr.AlgorithmIdentification:
    return algorithm_identification_sr()


def _site(lat: str) -> list[hd.sr.FindingSite]:
    return [hd.sr.FindingSite(anatomic_location=codes.BREAST, laterality=codes.LATERALITY[lat])]


def _slice_of(study: DCEStudy, point: np.ndarray) -> tuple[int, np.ndarray] | None:
    """The slice of the first post-contrast phase through ``point`` and its voxel coordinates."""
    phase = study.phases[1] if len(study.phases) > 1 else study.phases[0]
    ijk = phase.volume.world_to_voxel(np.asarray(point, dtype=float))
    k = int(round(float(ijk[2])))
    if not 0 <= k < len(phase.sop_instance_uids):
        return None
    return k, ijk


def _source(study: DCEStudy, k: int, headers: dict[str, Dataset]) -> hd.sr.SourceImageForRegion | None:
    phase = study.phases[1] if len(study.phases) > 1 else study.phases[0]
    uid = phase.sop_instance_uids[k]
    ref = headers.get(uid)
    if ref is None:
        return None
    return hd.sr.SourceImageForRegion(referenced_sop_class_uid=str(ref.SOPClassUID),
                                      referenced_sop_instance_uid=uid)


def _pixels(study: DCEStudy, pts_lps: np.ndarray) -> np.ndarray:
    """(column, row) image coordinates of LPS points, the top-left corner of the first pixel at 0."""
    phase = study.phases[1] if len(study.phases) > 1 else study.phases[0]
    inv = np.linalg.inv(phase.volume.affine)
    ijk = pts_lps @ inv[:3, :3].T + inv[:3, 3]
    return ijk[:, :2] + 0.5


def _ellipse_ring(study: DCEStudy, centre: np.ndarray, axes_mm: Sequence[float],
                  directions: Sequence[Sequence[float]]) -> np.ndarray:
    """Where the zone's ellipsoid (diameters ``axes_mm`` along ``directions``) cuts the slice plane
    through its centre: LPS points of the closed ring."""
    phase = study.phases[1] if len(study.phases) > 1 else study.phases[0]
    a = phase.volume.affine[:3, :3]
    e1, e2 = a[:, 0] / np.linalg.norm(a[:, 0]), a[:, 1] / np.linalg.norm(a[:, 1])
    dirs, semi = np.asarray(directions, dtype=float), np.maximum(np.asarray(axes_mm, dtype=float) / 2, 0.5)
    theta = np.linspace(0, 2 * np.pi, RING_POINTS, endpoint=False)
    u = np.cos(theta)[:, None] * e1 + np.sin(theta)[:, None] * e2
    r = 1.0 / np.sqrt((((u @ dirs.T) / semi) ** 2).sum(axis=1))
    ring = centre + u * r[:, None]
    return np.vstack([ring, ring[:1]])


def region_groups(report: Report, study: DCEStudy, headers: dict[str, Dataset]) -> list:
    """Planar ROI groups with image regions on the follow-up's source images (see the module)."""
    f = report.findings
    if report.status != "complete" or f is None or len(study.phases) < 1:
        return []
    lat = report.procedure.laterality
    study_uid = study.study_uid
    groups = []
    z = f.ablation_zone
    centre = np.asarray(z.center_lps_mm, dtype=float)
    at = _slice_of(study, centre)
    src = None if at is None else _source(study, at[0], headers)
    if at is not None and src is not None:
        ring = _pixels(study, _ellipse_ring(study, centre, z.axes_mm, z.axis_directions_lps))
        groups.append(hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=TrackingIdentifier(uid=derived_uid(study_uid, "zone-region"),
                                                   identifier="Ablation zone (outline)"),
            referenced_region=ImageRegion(graphic_type=hd.sr.GraphicTypeValues.POLYLINE,
                                          graphic_data=ring.astype(np.float32), source_image=src),
            finding_type=codes.ABLATION_ZONE, finding_sites=_site(lat), algorithm_id=_algorithm(),
            measurements=[Measurement(codes.VOLUME, float(z.volume_ml), codes.UNIT_ML),
                          Measurement(codes.LONG_AXIS, float(z.axes_mm[0]), codes.UNIT_MM)]))
    for n, x in enumerate(f.suspicious_foci, start=1):
        c = np.asarray(x.center_lps_mm, dtype=float)
        at = _slice_of(study, c)
        src = None if at is None else _source(study, at[0], headers)
        if at is None or src is None:
            continue
        phase = study.phases[1] if len(study.phases) > 1 else study.phases[0]
        e1 = phase.volume.affine[:3, 0] / np.linalg.norm(phase.volume.affine[:3, 0])
        pts = _pixels(study, np.stack([c, c + e1 * max(x.largest_diameter_mm / 2, 1.0)]))
        groups.append(hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=TrackingIdentifier(uid=derived_uid(study_uid, f"focus-region-{n}"),
                                                   identifier=f"Suspicious focus {n} (outline)"),
            referenced_region=ImageRegion(graphic_type=hd.sr.GraphicTypeValues.CIRCLE,
                                          graphic_data=pts.astype(np.float32), source_image=src),
            finding_type=codes.SUSPICIOUS_FOCUS, finding_sites=_site(lat), algorithm_id=_algorithm(),
            measurements=[Measurement(codes.LONG_AXIS, float(x.largest_diameter_mm), codes.UNIT_MM)]))
    return groups


def time_point_groups(report: Report) -> list:
    """One group per time point of ``report.longitudinal`` (none without it)."""
    lon = report.longitudinal
    if lon is None or report.status != "complete":
        return []
    lat = report.procedure.laterality
    out = []
    for order, t in enumerate(lon.time_points, start=1):
        label = f"{'current follow-up' if t.current else 'earlier follow-up'} {t.study_date or ''}".strip()
        ms = []
        if t.zone_volume_ml is not None:
            ms.append(Measurement(codes.VOLUME, float(t.zone_volume_ml), codes.UNIT_ML))
            if t.zone_axes_mm:
                ms.append(Measurement(codes.LONG_AXIS, float(t.zone_axes_mm[0]), codes.UNIT_MM))
        if t.rim_thickness_mm is not None:
            ms.append(Measurement(codes.RIM_THICKNESS, float(t.rim_thickness_mm), codes.UNIT_MM))
        c = t.change_vs_previous
        if c is not None:
            if c.volume_ratio is not None:
                ms.append(Measurement(VOLUME_RATIO, float(c.volume_ratio), codes.UNIT_RATIO))
            ms.append(Measurement(NEW_FOCI, float(len(c.new_foci)), UNIT_COUNT))
            ms.append(Measurement(GROWN_FOCI, float(len(c.grown_foci)), UNIT_COUNT))
        evaluations = []
        if t.current and lon.trend is not None:
            evaluations.append(QualitativeEvaluation(TREND, TREND_VALUES[lon.trend]))
        out.append(hd.sr.MeasurementsAndQualitativeEvaluations(
            tracking_identifier=TrackingIdentifier(uid=derived_uid(t.study_instance_uid, "time-point"),
                                                   identifier=f"Ablation zone, {label}"[:64]),
            finding_type=TIME_POINT_ASSESSMENT, finding_sites=_site(lat), algorithm_id=_algorithm(),
            time_point_context=hd.sr.TimePointContext(time_point=(t.study_date or f"time point {order}")[:64],
                                                      time_point_order=order),
            measurements=ms or None, qualitative_evaluations=evaluations or None))
    return out


def prior_evidence(priors: Sequence[DCEStudy]) -> list[Dataset]:
    """UID references of each earlier follow-up's pre-contrast images (SR evidence)."""
    out = []
    for study in priors:
        uids = set(study.phases[0].sop_instance_uids) if study.phases else set()
        for inst in study.instances:
            if inst.sop_uid in uids:
                ds = Dataset()
                ds.StudyInstanceUID, ds.SeriesInstanceUID = inst.study_uid, inst.series_uid
                ds.SOPInstanceUID, ds.SOPClassUID = inst.sop_uid, inst.sop_class_uid
                out.append(ds)
                uids.discard(inst.sop_uid)
    return out


__all__ = ["TREND", "TREND_VALUES", "prior_evidence", "region_groups", "time_point_groups"]
