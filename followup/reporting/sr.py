"""``sr.dcm``: Comprehensive 3D SR following TID 1500 (Measurement Report), built with highdicom,
laid out so that OHIF 3, Cornerstone3D's adapters and dcmqi (3D Slicer) read all of it
(docs/reports/viewers.md).

* Observation context: the product as device observer (name, manufacturer, model, serial).
* Procedure reported: MRI of breast. Image Library: the images the outlines lie on.
* Imaging Measurements (every group with the algorithm's identification and a SNOMED CT finding
  category beside our private finding code):
  - the residual-tumour assessment (TID 1501): "Probability of cancer" in % with its 95 %
    interval, each INFERRED FROM a POINT at the tumour centre mapped into the follow-up; coded
    status, BI-RADS category and registration quality; what the probability is about,
    contraindications, caveats and recommendations as TEXT evaluations (dcmqi reads these);
  - per finding (ablation zone, rim, each suspicious focus) a TID 1411 group (its SEG segment,
    measurements, coded evaluations) and, under the same Tracking UID, its outline: a TID 1501
    group with the in-plane Area INFERRED FROM a closed POLYLINE, as Cornerstone3D writes one
    (tracking identifier ``Cornerstone3DTools@^0.1.0:PlanarFreehandROI:<finding>``);
  - the surveillance time points (:mod:`followup.reporting.longitudinal_sr`).
  No group lacks image coordinates (OHIF's SR display stops at one): a deferred or failed
  analysis has no Imaging Measurements.
* A root "Qualitative Evaluations" container (TID 1500) holds the status and the words (TEXT:
  among them the technique, the comparison and what is not assessed) and the status and BI-RADS
  category coded (CODE), whatever the analysis gave.
The SR belongs to the follow-up study (same Study Instance UID, new series) and lists the
follow-up source images as evidence. A later revision's SR names the SR of the report it
supersedes (``report.supersedes``) in its Predecessor Documents Sequence, and says so in a comment.
The header names the product (Manufacturer, model, version, Contributing Equipment).
"""

from __future__ import annotations

from collections.abc import Sequence

import highdicom as hd
import numpy as np
from highdicom.sr import (
    CodeContentItem,
    CodedConcept,
    ContainerContentItem,
    FindingSite,
    ImageRegion,
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
from followup.reporting.equipment import stamp_product
from followup.reporting.model import Report
from followup.reporting.model_reading import LocationRow
from followup.reporting.report_text import disease_words, supersedes_text, technique_text
from followup.reporting.seg import tracking_uid
from followup.reporting.sr_lexicon import lexicon_evaluations
from followup.reporting.sr_location import breast_evaluations, location_evaluations, location_measurements, site
from followup.reporting.sr_outlines import Outline
from followup.reporting.uids import derived_uid

QUALITATIVE_EVALUATIONS = CodedConcept("C0034375", "UMLS", "Qualitative Evaluations")
# Cornerstone3D's tracking-identifier prefix and the tool that draws each graphic type
CORNERSTONE_TAG = "Cornerstone3DTools@^0.1.0"
CORNERSTONE_TOOL = {"POLYLINE": "PlanarFreehandROI", "POINT": "Probe"}


def _site(laterality: str) -> list[FindingSite]:
    return [FindingSite(anatomic_location=codes.BREAST, laterality=codes.LATERALITY[laterality])]


def _m(name, value: float, unit, at: Outline | None = None) -> Measurement:
    """A NUM; ``at``: the POINT it was read at (INFERRED FROM SCOORD, TID 300), so that
    Cornerstone's Probe adapter finds the point in the NUM it reads."""
    coordinates = None if at is None else [hd.sr.CoordinatesForMeasurement(
        graphic_type=hd.sr.GraphicTypeValues[at.graphic_type], graphic_data=at.points.astype(np.float32),
        source_image=_source(at))]
    return Measurement(name=name, value=float(value), unit=unit, referenced_coordinates=coordinates)


def algorithm_identification_sr() -> hd.sr.AlgorithmIdentification:
    return hd.sr.AlgorithmIdentification(name=ALGORITHM_NAME, version=ALGORITHM_VERSION)


def _source(o: Outline) -> hd.sr.SourceImageForRegion:
    return hd.sr.SourceImageForRegion(
        referenced_sop_class_uid=o.sop_class_uid, referenced_sop_instance_uid=o.sop_instance_uid,
        referenced_frame_numbers=None if o.frame_number is None else [o.frame_number])


def image_region(o: Outline) -> ImageRegion:
    return ImageRegion(graphic_type=hd.sr.GraphicTypeValues[o.graphic_type],
                       graphic_data=o.points.astype(np.float32), source_image=_source(o))


def outline_tracking_text(o: Outline, label: str) -> str:
    """The outline group's Tracking Identifier: Cornerstone3D picks the tool that hydrates a group
    by this text's prefix (``Cornerstone3DTools@^0.1.0:<tool>``), then the finding's name."""
    return f"{CORNERSTONE_TAG}:{CORNERSTONE_TOOL[o.graphic_type]}:{label}"


def _segment_ref(seg: Dataset | None, number: int) -> hd.sr.ReferencedSegment | None:
    if seg is None:
        return None
    return hd.sr.ReferencedSegment(
        sop_class_uid=seg.SOPClassUID, sop_instance_uid=seg.SOPInstanceUID, segment_number=number,
        source_series=hd.sr.SourceSeriesForSegmentation(seg.ReferencedSeriesSequence[0].SeriesInstanceUID))


def _tracking_uid(seg: Dataset | None, study_uid: str, number: int, label: str) -> str:
    return tracking_uid(seg.SOPInstanceUID, number) if seg is not None else derived_uid(study_uid, label)


def _volumetric(seg, study_uid, number, label, finding_type, laterality, measurements, evaluations,
                outline: Outline | None, location: LocationRow | None = None) -> list:
    """The finding's TID 1411 group (its SEG segment) and its outline's TID 1410 group, both under
    the segment's Tracking UID; ``location``: its clock face, distance from the nipple and depth."""
    uid = _tracking_uid(seg, study_uid, number, label)
    measurements = [*measurements, *location_measurements(location)]
    evaluations = [*(evaluations or []), *location_evaluations(location)]
    common = dict(tracking_identifier=TrackingIdentifier(uid=uid, identifier=label), finding_type=finding_type,
                  finding_category=codes.MORPHOLOGICALLY_ALTERED, finding_sites=site(laterality, location),
                  measurements=measurements, qualitative_evaluations=evaluations or None,
                  algorithm_id=algorithm_identification_sr())
    ref = _segment_ref(seg, number)
    groups: list = [hd.sr.MeasurementsAndQualitativeEvaluations(**common) if ref is None
                    else hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(referenced_segment=ref, **common)]
    if outline is not None and outline.area_mm2 is not None:
        groups.append(outline_group_for(uid, label, outline, finding_type, laterality))
    return groups


def outline_group_for(uid: str, label: str, o: Outline, finding_type, laterality: str):
    """The finding's outline as Cornerstone3D writes one (TID 1501: its in-plane Area, INFERRED
    FROM the closed POLYLINE on its image), under the finding's Tracking UID: viewers that merge
    groups by it, as OHIF does, show the outline with the finding's values."""
    area = _m(codes.AREA, float(o.area_mm2 or 0.0), codes.UNIT_MM2, o)
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=TrackingIdentifier(uid=uid, identifier=outline_tracking_text(o, label)),
        finding_type=finding_type, finding_category=codes.MORPHOLOGICALLY_ALTERED,
        finding_sites=_site(laterality), algorithm_id=algorithm_identification_sr(), measurements=[area])
    # the finding's name as the annotation's label (Cornerstone labels a hydrated tool with it)
    group[0].ContentSequence.append(TextContentItem(codes.COMMENT, label, RelationshipTypeValues.CONTAINS))
    return group


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


def coded_results(report: Report) -> list[QualitativeEvaluation]:
    """The qualitative results, coded: the analysis status and the BI-RADS category."""
    status = QualitativeEvaluation(codes.ANALYSIS_STATUS, codes.STATUS_VALUES[report.status])
    return [status, *birads_evaluations(report), *breast_evaluations(report)]


def segment_volumes_ml(seg: Dataset | None) -> dict[int, float]:
    """Each segment's volume as its SEG voxels give it (frames x pixel area x slice spacing): what a
    viewer's segment statistics show."""
    if seg is None:
        return {}
    pm = seg.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
    spacing = pm.get("SpacingBetweenSlices", pm.SliceThickness)
    voxel_ml = float(pm.PixelSpacing[0]) * float(pm.PixelSpacing[1]) * float(spacing) / 1000.0
    pixels = seg.pixel_array.reshape(len(seg.PerFrameFunctionalGroupsSequence), -1)
    out: dict[int, float] = {}
    for f, item in enumerate(seg.PerFrameFunctionalGroupsSequence):
        n = int(item.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        out[n] = out.get(n, 0.0) + float(np.count_nonzero(pixels[f])) * voxel_ml
    return out


def _assessment_group(report: Report, site: Outline | None) -> list:
    """The residual-tumour assessment (probability, interval, BI-RADS, registration quality, and as
    TEXT evaluations what the probability is about, contraindications, caveats and
    recommendations; TID 1501), each number read at the site it is about (INFERRED FROM a POINT
    at the tumour centre mapped into the follow-up: OHIF shows the group there)."""
    assert report.registration is not None and report.residual_probability is not None
    assert report.probability_interval is not None
    lat = report.procedure.laterality
    p, (lo, hi) = report.residual_probability, report.probability_interval
    reg_quality = codes.GOOD if report.registration.quality == "good" else codes.POOR
    label = "Residual tumour assessment"
    uid = derived_uid(_study_uid(report), "assessment")
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=TrackingIdentifier(uid=uid, identifier=label),
        finding_type=codes.RESIDUAL_ASSESSMENT, finding_category=codes.NEOPLASM, finding_sites=_site(lat),
        measurements=[_m(codes.PROBABILITY_OF_CANCER, 100 * p, codes.UNIT_PERCENT, site),
                      _m(codes.PROBABILITY_LOWER, 100 * lo, codes.UNIT_PERCENT, site),
                      _m(codes.PROBABILITY_UPPER, 100 * hi, codes.UNIT_PERCENT, site)],
        qualitative_evaluations=[*coded_results(report),
                                 QualitativeEvaluation(codes.REGISTRATION_QUALITY, reg_quality)],
        algorithm_id=algorithm_identification_sr())
    group[0].ContentSequence.extend(report_texts(report, with_status=False))
    return [group]


def measurement_groups(report: Report, seg: Dataset | None, outlines: dict[str, Outline] | None = None) -> list:
    """The Imaging Measurements' groups: none for a deferred or failed analysis (its status and
    BI-RADS category are coded in the report's Qualitative Evaluations: a group without image
    coordinates stops OHIF's SR display); else the assessment at its site and, per finding, its
    TID 1411 group (SEG segment) and its outline."""
    if (report.status != "complete" or report.findings is None or report.registration is None
            or report.residual_probability is None or report.probability_interval is None):
        return []
    outlines = outlines or {}
    lat = report.procedure.laterality
    study_uid = _study_uid(report)
    seg_ml = segment_volumes_ml(seg)
    groups = _assessment_group(report, outlines.get("assessment"))
    z = report.findings.ablation_zone
    groups += _volumetric(
        seg, study_uid, 1, "Ablation zone", codes.ABLATION_ZONE, lat,
        [_m(codes.VOLUME, z.volume_ml, codes.UNIT_ML), _m(codes.LONG_AXIS, z.axes_mm[0], codes.UNIT_MM),
         _m(codes.SMALLEST_MARGIN, z.smallest_margin_mm, codes.UNIT_MM)],
        [QualitativeEvaluation(codes.COVERS_TARGET, codes.YES if z.covers_tumour_plus_margin else codes.NO)],
        outlines.get("zone"), z.location)
    rim = report.findings.rim
    groups += _volumetric(
        seg, study_uid, 2, "Enhancing rim", codes.ENHANCING_RIM, lat,
        [_m(codes.RIM_THICKNESS, rim.thickness_mm, codes.UNIT_MM),
         _m(codes.INITIAL_ENHANCEMENT, rim.initial_enhancement_pct, codes.UNIT_PERCENT)],
        _curve(rim.curve_type), outlines.get("rim"))
    for n, f in enumerate(report.findings.suspicious_foci, start=1):
        ms = []
        if 3 + n in seg_ml:  # the segment's voxels, as a viewer counts them
            ms.append(_m(codes.VOLUME, seg_ml[3 + n], codes.UNIT_ML))
        ms += [_m(codes.CORE_VOLUME, f.volume_mm3 / 1000.0, codes.UNIT_ML),
               _m(codes.LONG_AXIS, f.largest_diameter_mm, codes.UNIT_MM),
               _m(codes.PEAK_ENHANCEMENT, f.peak_enhancement_pct, codes.UNIT_PERCENT),
               _m(codes.INITIAL_ENHANCEMENT, f.initial_enhancement_pct, codes.UNIT_PERCENT),
               _m(codes.DISTANCE_TO_EDGE, f.distance_to_zone_edge_mm, codes.UNIT_MM)]
        if f.ser is not None:
            ms.append(_m(codes.SER, f.ser, codes.UNIT_RATIO))
        groups += _volumetric(seg, study_uid, 3 + n, f"Suspicious focus {n}", codes.SUSPICIOUS_FOCUS,
                              lat, ms, _curve(f.curve_type) + lexicon_evaluations(f.lexicon),
                              outlines.get(f"focus-{n}"), f.location)
    first = 4 + len(report.findings.suspicious_foci)
    for k, x in enumerate([m for m in report.findings.non_mass_enhancement if m.suspicious]):
        # read at its centre (a POINT) when no SEG segment gives the group its image
        ms = [_m(codes.EXTENT, x.extent_mm, codes.UNIT_MM, None if seg is not None else outlines.get(f"nme-{k + 1}")),
              _m(codes.INITIAL_ENHANCEMENT, x.initial_enhancement_pct, codes.UNIT_PERCENT),
              _m(codes.DISTANCE_TO_EDGE, x.distance_to_zone_edge_mm, codes.UNIT_MM)]
        if first + k in seg_ml:
            ms.insert(0, _m(codes.VOLUME, seg_ml[first + k], codes.UNIT_ML))
        evals = [QualitativeEvaluation(codes.NME_DISTRIBUTION, codes.NME_DISTRIBUTION_VALUES[x.distribution]),
                 QualitativeEvaluation(codes.NME_INTERNAL, codes.NME_INTERNAL_VALUES[x.internal_enhancement]),
                 *_curve(x.delayed_phase)]
        groups += _volumetric(seg, study_uid, first + k, f"Non-mass enhancement {k + 1}",
                              codes.NON_MASS_ENHANCEMENT, lat, ms, evals, None, x.location)
    return groups


def report_texts(report: Report, *, with_status: bool = True) -> list[TextContentItem]:
    """The report's words as TEXT items: status (and the probability in words), endpoint,
    contraindications, caveats, recommendations and what this report supersedes."""
    items = []
    if with_status:
        items.append(TextContentItem(codes.ANALYSIS_STATUS, status_text(report)[:1024],
                                     RelationshipTypeValues.CONTAINS))
    if report.endpoint:
        items.append(TextContentItem(codes.ENDPOINT, report.endpoint[:1024], RelationshipTypeValues.CONTAINS))
    items += [TextContentItem(codes.CONTRAINDICATION, c.text[:1024], RelationshipTypeValues.CONTAINS)
              for c in report.contraindications]
    items += [TextContentItem(codes.CAVEAT, c.text[:1024], RelationshipTypeValues.CONTAINS)
              for c in report.caveats]
    items += [TextContentItem(codes.RECOMMENDATION, f"[{r.code}] {r.text}"[:1024],
                              RelationshipTypeValues.CONTAINS) for r in report.recommendations]
    return items


def reading_texts(report: Report) -> list[TextContentItem]:
    """The technique (DCM 121065 Procedure Description), the comparison (DCM 111424 Comparison to
    previous studies) and what is not assessed, as TEXT items (issue 24)."""
    items = [TextContentItem(codes.TECHNIQUE, technique_text(report)[:1024], RelationshipTypeValues.CONTAINS)]
    if report.comparison is not None:
        items.append(TextContentItem(codes.COMPARISON, report.comparison.sentence[:1024],
                                     RelationshipTypeValues.CONTAINS))
    if report.not_assessed:
        items.append(TextContentItem(codes.NOT_ASSESSED, report.not_assessed[:1024], RelationshipTypeValues.CONTAINS))
    return items


def status_text(report: Report) -> str:
    status = report.status + (f": {report.reason}" if report.reason else "")
    if report.status == "complete" and report.probability_interval and report.residual_probability is not None:
        lo, hi = report.probability_interval
        status += (f"; probability of {disease_words(report)} at the ablation site "
                   f"{100 * report.residual_probability:.0f}% ({report.interval_kind} 95% interval "
                   f"{100 * lo:.0f}-{100 * hi:.0f}%), confidence {report.confidence}")
    if report.birads is not None:
        status += f"; BI-RADS {report.birads.category}: {report.birads.label}. {report.birads.management}"
    return status


def text_evaluations(report: Report) -> ContainerContentItem:
    """TID 1500's root Qualitative Evaluations: the report's words (TEXT) then its coded results
    (CODE: status, BI-RADS category) - where a reader finds them whatever the analysis gave."""
    items: list = report_texts(report) + reading_texts(report)
    superseded = supersedes_text(report)
    if superseded:
        items.append(TextContentItem(codes.COMMENT, superseded[:1024], RelationshipTypeValues.CONTAINS))
    for e in coded_results(report):
        code = e[0]
        items.append(CodeContentItem(name=CodedConcept.from_dataset(code.ConceptNameCodeSequence[0]),
                                     value=CodedConcept.from_dataset(code.ConceptCodeSequence[0]),
                                     relationship_type=RelationshipTypeValues.CONTAINS))
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
             series_number: int = 9000, extra_groups: Sequence = (),
             outlines: dict[str, Outline] | None = None,
             library: Sequence[Dataset] = ()) -> hd.sr.Comprehensive3DSR:
    """The SR of the finished report (its UIDs: ``report.outputs["sr"]``); ``seg``: the SEG
    made for this report (its segments are referenced), when there is one. ``outlines``: where
    the findings lie (:mod:`followup.reporting.sr_outlines`; keys ``assessment``, ``zone``,
    ``rim``, ``focus-<n>``). ``extra_groups``: more measurement groups after the report's own
    (time points: :mod:`followup.reporting.longitudinal_sr`). ``library``: full headers of the
    images the outlines lie on (the Image Library)."""
    study_uid = _study_uid(report)
    uids = report.outputs["sr"]
    device = hd.sr.DeviceObserverIdentifyingAttributes(
        uid=derived_uid(study_uid, "device", version="-"), name="followup", manufacturer_name="followup",
        model_name=ALGORITHM_NAME, serial_number="0")
    context = hd.sr.ObservationContext(observer_device_context=hd.sr.ObserverContext(
        observer_type=pcodes.DCM.Device, observer_identifying_attributes=device))
    groups = [*measurement_groups(report, seg, outlines), *extra_groups]
    placeholder = not groups  # highdicom wants a group; a deferred report has none
    if placeholder:
        groups = [hd.sr.MeasurementsAndQualitativeEvaluations(
            tracking_identifier=TrackingIdentifier(uid=derived_uid(study_uid, "none"), identifier="none"),
            finding_type=codes.LESION)]
    measurement_report = hd.sr.MeasurementReport(
        observation_context=context, procedure_reported=codes.MRI_OF_BREAST,
        imaging_measurements=groups, referenced_images=list(library) or None)
    root = measurement_report[0]
    if placeholder:  # no Imaging Measurements (TID 1500 wants it or the Qualitative Evaluations)
        root.ContentSequence = [i for i in root.ContentSequence if not (
            i.ValueType == "CONTAINER" and i.ConceptNameCodeSequence[0].CodeValue == "126010")]
    root.ContentSequence.append(text_evaluations(report))
    sr = hd.sr.Comprehensive3DSR(
        evidence=list(evidence) + ([seg] if seg is not None else []), content=root,
        series_instance_uid=uids.series_instance_uid, series_number=series_number,
        sop_instance_uid=uids.sop_instance_uid, instance_number=1, manufacturer="followup", is_complete=True,
        is_final=False, is_verified=False, series_description="followup: residual tumour assessment",
        previous_versions=predecessor_documents(report),
    )
    sr.CodingSchemeIdentificationSequence = [codes.coding_scheme_identification()]
    stamp_product(sr)
    return sr
