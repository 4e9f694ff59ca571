"""What the SR adds for longitudinal surveillance (issue 14).

One measurement group per time point (TID 1502 time point context: the study date and its order)
with the zone volume, long axis, rim thickness and, against the previous follow-up, the volume
ratio and the new and grown foci; the current one carries the trend as a qualitative evaluation.
Each time point's group carries its ablation zone's outline on that study's own first
post-contrast image (a TID 1410 group: the prior studies' images are referenced there, and listed
as evidence), so that viewers that draw TID 1500 show every time point where it was measured.
Built from the finished report and the studies' geometry only.
"""

from __future__ import annotations

from collections.abc import Sequence

import highdicom as hd
from highdicom.sr import CodedConcept, Measurement, QualitativeEvaluation, TrackingIdentifier
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes as pcodes

from followup.dicom.study import DCEStudy
from followup.reporting import codes
from followup.reporting.model import Report
from followup.reporting.sr import algorithm_identification_sr, image_region
from followup.reporting.sr_outlines import Outline
from followup.reporting.uids import derived_uid

TIME_POINT_ASSESSMENT = codes.private("FU101", "Ablation zone at a surveillance time point")
# standard concepts where one exists (DCM "Volume Ratio", "Trend"); the private ones where not
VOLUME_RATIO = pcodes.DCM.VolumeRatio  # of the zone, to the previous follow-up (the group says whose)
NEW_FOCI = codes.private("FU103", "New suspicious foci since the previous follow-up")
GROWN_FOCI = codes.private("FU104", "Grown suspicious foci since the previous follow-up")
TREND = pcodes.DCM.Trend
TREND_VALUES = {t: codes.private(f"FU11{n}", t.capitalize().replace("-", " "))
                for n, t in enumerate(("involuting", "stable", "growing", "new-enhancement"))}
TREND_VALUES["stable"] = pcodes.SCT.NoChange
UNIT_COUNT = CodedConcept("{count}", "UCUM", "count")


def _algorithm() -> hd.sr.AlgorithmIdentification:
    return algorithm_identification_sr()


def _site(lat: str) -> list[hd.sr.FindingSite]:
    return [hd.sr.FindingSite(anatomic_location=codes.BREAST, laterality=codes.LATERALITY[lat])]


def time_point_groups(report: Report, outlines: dict[str, Outline] | None = None) -> list:
    """One group per time point of ``report.longitudinal`` (none without it); ``outlines``: the
    zone's outline of each time point, by its study's Study Instance UID."""
    outlines = outlines or {}
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
        tracking = TrackingIdentifier(uid=derived_uid(t.study_instance_uid, "time-point"),
                                      identifier=f"Ablation zone, {label}"[:64])
        common = dict(tracking_identifier=tracking, finding_type=TIME_POINT_ASSESSMENT,
                      finding_category=codes.MORPHOLOGICALLY_ALTERED, finding_sites=_site(lat),
                      algorithm_id=_algorithm(),
                      time_point_context=hd.sr.TimePointContext(
                          time_point=(t.study_date or f"time point {order}")[:64], time_point_order=order),
                      measurements=ms or None, qualitative_evaluations=evaluations or None)
        where = outlines.get(t.study_instance_uid)
        out.append(hd.sr.MeasurementsAndQualitativeEvaluations(**common) if where is None
                   else hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
                       referenced_region=image_region(where), **common))
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


__all__ = ["TREND", "TREND_VALUES", "prior_evidence", "time_point_groups"]
