"""``sr.dcm``: Comprehensive 3D SR following TID 1500 (Measurement Report), built with highdicom.

* Observation context: the product as device observer (name, manufacturer, model, version).
* Procedure reported: MRI of breast.
* Measurement groups: the residual-tumour assessment (probability with its 95 % interval, as
  "Probability of cancer" in %, and the registration quality); the ablation zone (volume, long
  axis, smallest margin, covers tumour + margin); the rim (thickness, initial enhancement, curve
  type); each suspicious focus (volume, long axis, peak and initial enhancement, SER, distance to
  the zone edge, curve type). Each volumetric group has a tracking identifier and references its
  SEG segment; finding site breast with laterality.
* A "Qualitative Evaluations" container (TID 1500) holds the analysis status and reason, the
  caveats and the recommendations as text items.
The SR belongs to the follow-up study (same Study Instance UID, new series) and lists the
follow-up source images as evidence. A later revision's SR names the SR of the report it
supersedes (``report.supersedes``) in its Predecessor Documents Sequence, and says so in a comment.
Deferred and failed analyses still give a valid SR saying why.
"""

from __future__ import annotations

from collections.abc import Sequence

import highdicom as hd
from highdicom.sr import (
    CodedConcept,
    ContainerContentItem,
    FindingSite,
    Measurement,
    QualitativeEvaluation,
    RelationshipTypeValues,
    TextContentItem,
    TrackingIdentifier,
)
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes as pcodes

from followup.pipelines.assess import ALGORITHM_NAME, ALGORITHM_VERSION
from followup.reporting import codes
from followup.reporting.model import Report
from followup.reporting.report_text import disease_words, supersedes_text
from followup.reporting.seg import tracking_uid
from followup.reporting.uids import derived_uid

QUALITATIVE_EVALUATIONS = CodedConcept("C0034375", "UMLS", "Qualitative Evaluations")


def _site(laterality: str) -> list[FindingSite]:
    return [FindingSite(anatomic_location=codes.BREAST, laterality=codes.LATERALITY[laterality])]


def _m(name, value: float, unit) -> Measurement:
    return Measurement(name=name, value=float(value), unit=unit)


def algorithm_identification_sr() -> hd.sr.AlgorithmIdentification:
    return hd.sr.AlgorithmIdentification(name=ALGORITHM_NAME, version=ALGORITHM_VERSION)


def _segment_ref(seg: Dataset | None, number: int) -> hd.sr.ReferencedSegment | None:
    if seg is None:
        return None
    return hd.sr.ReferencedSegment(
        sop_class_uid=seg.SOPClassUID, sop_instance_uid=seg.SOPInstanceUID, segment_number=number,
        source_series=hd.sr.SourceSeriesForSegmentation(seg.ReferencedSeriesSequence[0].SeriesInstanceUID))


def _tracking(seg: Dataset | None, study_uid: str, number: int, label: str) -> TrackingIdentifier:
    uid = tracking_uid(seg.SOPInstanceUID, number) if seg is not None else derived_uid(study_uid, label)
    return TrackingIdentifier(uid=uid, identifier=label)


def _volumetric(seg, study_uid, number, label, finding_type, laterality, measurements, evaluations):
    ref = _segment_ref(seg, number)
    if ref is None:
        return hd.sr.MeasurementsAndQualitativeEvaluations(
            tracking_identifier=_tracking(seg, study_uid, number, label), finding_type=finding_type,
            finding_sites=_site(laterality), measurements=measurements,
            qualitative_evaluations=evaluations or None, algorithm_id=algorithm_identification_sr())
    return hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=_tracking(seg, study_uid, number, label), referenced_segment=ref,
        finding_type=finding_type, finding_sites=_site(laterality), measurements=measurements,
        qualitative_evaluations=evaluations or None, algorithm_id=algorithm_identification_sr())


def _curve(kind: str) -> list[QualitativeEvaluation]:
    if kind not in codes.CURVE_TYPE_VALUES:
        return []
    return [QualitativeEvaluation(codes.KINETIC_CURVE_TYPE, codes.CURVE_TYPE_VALUES[kind])]


def _study_uid(report: Report) -> str:
    assert report.studies.followup is not None, "a report of an analysis has its follow-up study"
    return report.studies.followup.study_instance_uid


def birads_evaluations(report: Report) -> list[QualitativeEvaluation]:
    """The BI-RADS category, coded (SNOMED CT, CID 6027), and category 4's subdivision."""
    if report.birads is None:
        return []
    c = report.birads.category
    out = [QualitativeEvaluation(codes.BIRADS_ASSESSMENT, codes.BIRADS_VALUES[c])]
    if c in codes.BIRADS_SUBCATEGORY_VALUES:
        out.append(QualitativeEvaluation(codes.BIRADS_SUBCATEGORY, codes.BIRADS_SUBCATEGORY_VALUES[c]))
    return out


def measurement_groups(report: Report, seg: Dataset | None) -> list:
    lat = report.procedure.laterality
    study_uid = _study_uid(report)
    status = QualitativeEvaluation(codes.ANALYSIS_STATUS, codes.STATUS_VALUES[report.status])
    tracking = TrackingIdentifier(uid=derived_uid(study_uid, "assessment"),
                                  identifier="Residual tumour assessment")
    if (report.status != "complete" or report.findings is None or report.registration is None
            or report.residual_probability is None or report.probability_interval is None):
        # no measurement: the group says the analysis was deferred or failed (reason in the text)
        return [hd.sr.MeasurementsAndQualitativeEvaluations(
            tracking_identifier=tracking, finding_type=codes.RESIDUAL_ASSESSMENT,
            finding_sites=_site(lat), qualitative_evaluations=[status, *birads_evaluations(report)],
            algorithm_id=algorithm_identification_sr())]
    groups = []
    p = report.residual_probability
    lo, hi = report.probability_interval
    reg_quality = codes.GOOD if report.registration.quality == "good" else codes.POOR
    groups.append(hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=tracking,
        finding_type=codes.RESIDUAL_ASSESSMENT, finding_sites=_site(lat),
        measurements=[_m(codes.PROBABILITY_OF_CANCER, 100 * p, codes.UNIT_PERCENT),
                      _m(codes.PROBABILITY_LOWER, 100 * lo, codes.UNIT_PERCENT),
                      _m(codes.PROBABILITY_UPPER, 100 * hi, codes.UNIT_PERCENT)],
        qualitative_evaluations=[status, *birads_evaluations(report),
                                 QualitativeEvaluation(codes.REGISTRATION_QUALITY, reg_quality)],
        algorithm_id=algorithm_identification_sr()))
    z = report.findings.ablation_zone
    groups.append(_volumetric(
        seg, study_uid, 1, "Ablation zone", codes.ABLATION_ZONE, lat,
        [_m(codes.VOLUME, z.volume_ml, codes.UNIT_ML), _m(codes.LONG_AXIS, z.axes_mm[0], codes.UNIT_MM),
         _m(codes.SMALLEST_MARGIN, z.smallest_margin_mm, codes.UNIT_MM)],
        [QualitativeEvaluation(codes.COVERS_TARGET, codes.YES if z.covers_tumour_plus_margin else codes.NO)]))
    rim = report.findings.rim
    groups.append(_volumetric(
        seg, study_uid, 2, "Enhancing rim", codes.ENHANCING_RIM, lat,
        [_m(codes.RIM_THICKNESS, rim.thickness_mm, codes.UNIT_MM),
         _m(codes.INITIAL_ENHANCEMENT, rim.initial_enhancement_pct, codes.UNIT_PERCENT)],
        _curve(rim.curve_type)))
    for n, f in enumerate(report.findings.suspicious_foci, start=1):
        ms = [_m(codes.VOLUME, f.volume_mm3 / 1000.0, codes.UNIT_ML),
              _m(codes.LONG_AXIS, f.largest_diameter_mm, codes.UNIT_MM),
              _m(codes.PEAK_ENHANCEMENT, f.peak_enhancement_pct, codes.UNIT_PERCENT),
              _m(codes.INITIAL_ENHANCEMENT, f.initial_enhancement_pct, codes.UNIT_PERCENT),
              _m(codes.DISTANCE_TO_EDGE, f.distance_to_zone_edge_mm, codes.UNIT_MM)]
        if f.ser is not None:
            ms.append(_m(codes.SER, f.ser, codes.UNIT_RATIO))
        groups.append(_volumetric(seg, study_uid, 3 + n, f"Suspicious focus {n}", codes.SUSPICIOUS_FOCUS,
                                  lat, ms, _curve(f.curve_type)))
    return groups


def text_evaluations(report: Report) -> ContainerContentItem:
    status = report.status + (f": {report.reason}" if report.reason else "")
    if report.status == "complete" and report.probability_interval and report.residual_probability is not None:
        lo, hi = report.probability_interval
        status += (f"; probability of {disease_words(report)} at the ablation site "
                   f"{100 * report.residual_probability:.0f}% ({report.interval_kind} 95% interval "
                   f"{100 * lo:.0f}-{100 * hi:.0f}%), confidence {report.confidence}")
    if report.birads is not None:
        status += f"; BI-RADS {report.birads.category}: {report.birads.label}. {report.birads.management}"
    items = [TextContentItem(codes.ANALYSIS_STATUS, status[:1024], RelationshipTypeValues.CONTAINS)]
    if report.endpoint:
        items.append(TextContentItem(codes.ENDPOINT, f"{report.endpoint} {report.not_assessed}"[:1024],
                                     RelationshipTypeValues.CONTAINS))
    items += [TextContentItem(codes.CONTRAINDICATION, c.text[:1024], RelationshipTypeValues.CONTAINS)
              for c in report.contraindications]
    items += [TextContentItem(codes.CAVEAT, c.text[:1024], RelationshipTypeValues.CONTAINS)
              for c in report.caveats]
    items += [TextContentItem(codes.RECOMMENDATION, f"[{r.code}] {r.text}"[:1024],
                              RelationshipTypeValues.CONTAINS) for r in report.recommendations]
    superseded = supersedes_text(report)
    if superseded:
        items.append(TextContentItem(codes.COMMENT, superseded[:1024], RelationshipTypeValues.CONTAINS))
    container = ContainerContentItem(QUALITATIVE_EVALUATIONS, relationship_type=RelationshipTypeValues.CONTAINS)
    container.ContentSequence = items  # type: ignore[assignment]  # pydicom makes it a Sequence
    return container


def predecessor_documents(report: Report) -> list[Dataset] | None:
    """The SR of the report this one supersedes, as highdicom's ``previous_versions`` wants it
    (its four UIDs; same study); None for a first report."""
    if report.supersedes is None or "sr" not in report.supersedes.outputs:
        return None
    earlier = report.supersedes.outputs["sr"]
    ref = Dataset()
    ref.StudyInstanceUID = _study_uid(report)
    ref.SeriesInstanceUID = earlier.series_instance_uid
    ref.SOPInstanceUID = earlier.sop_instance_uid
    ref.SOPClassUID = earlier.sop_class_uid
    return [ref]


def build_sr(report: Report, evidence: list[Dataset], seg: Dataset | None, *,
             series_number: int = 9000, extra_groups: Sequence = ()) -> hd.sr.Comprehensive3DSR:
    """The SR of the finished report (its UIDs: ``report.outputs["sr"]``); ``seg``: the SEG
    made for this report (its segments are referenced), when there is one. ``extra_groups``: more
    measurement groups after the report's own (image regions, time points:
    :mod:`followup.reporting.longitudinal_sr`)."""
    study_uid = _study_uid(report)
    uids = report.outputs["sr"]
    device = hd.sr.DeviceObserverIdentifyingAttributes(
        uid=derived_uid(study_uid, "device", version="-"), name="followup", manufacturer_name="followup",
        model_name=f"{ALGORITHM_NAME} {ALGORITHM_VERSION}")
    context = hd.sr.ObservationContext(observer_device_context=hd.sr.ObserverContext(
        observer_type=pcodes.DCM.Device, observer_identifying_attributes=device))
    measurement_report = hd.sr.MeasurementReport(
        observation_context=context, procedure_reported=codes.MRI_OF_BREAST,
        imaging_measurements=[*measurement_groups(report, seg), *extra_groups])
    root = measurement_report[0]
    root.ContentSequence.append(text_evaluations(report))
    sr = hd.sr.Comprehensive3DSR(
        evidence=list(evidence) + ([seg] if seg is not None else []), content=root,
        series_instance_uid=uids.series_instance_uid, series_number=series_number,
        sop_instance_uid=uids.sop_instance_uid, instance_number=1, manufacturer="followup", is_complete=True,
        is_final=False, is_verified=False, series_description="followup: residual tumour assessment",
        previous_versions=predecessor_documents(report),
    )
    sr.CodingSchemeIdentificationSequence = [codes.coding_scheme_identification()]
    return sr
