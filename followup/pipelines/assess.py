"""The analysis of one follow-up study against its baseline and procedure record.

Steps: timing rule (>= 21 days) -> registration (follow-up to baseline, pre-contrast phases) ->
the baseline tumour and its margin mapped into follow-up space -> within-study motion
correction in a box around it -> enhancement maps -> the ablation zone found in the follow-up
itself near the mapped tumour (:mod:`followup.pipelines.zone_search`; the box cut again around it
when it lies elsewhere) -> zone, rim, foci from the zone's centre, margin around the mapped
tumour -> Bayes model -> caveats and recommendations. Registration seeds the search and measures
the margin; a poor one no longer discards the imaging read (only the margin factor, and the
confidence): it does so only when the zone is not found either. Pure: studies (already in
memory) and the record in, an ``Assessment`` out; reading DICOM and writing reports happen
elsewhere.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from followup import __version__, evidence as ev, record_rules
from followup.dicom.study import DCEStudy
from followup.errors import FollowupError
from followup.pipelines.assessment import Assessment, Note, Status
from followup.pipelines.birads import categorise
from followup.pipelines.breast_read import read_followup_breast
from followup.pipelines.conclusion import (
    always_caveats,
    category,
    contraindications,
    recommendations,
    record_caveats,
)
from followup.pipelines.enhancement import EnhancementMaps, enhancement_maps, unsuppressed_fat_ceiling
from followup.pipelines.enhancement_before import EnhancementBefore, enhancement_before
from followup.pipelines.motion import AlignedRoi, realign_phases
from followup.pipelines.probability import (
    NOT_ASSESSABLE,
    SITE_BAND_MM,
    Confidence,
    FocusEvidence,
    ImagingEvidence,
    NmeEvidence,
    residual_probability,
    site_findings,
    site_foci,
)
from followup.pipelines.registration.driver import register
from followup.pipelines.registration.result import Quality, RegistrationResult
from followup.pipelines.segmentation.driver import segment
from followup.pipelines.segmentation.model import NonMassEnhancement, Segmentation
from followup.pipelines.segmentation.zone import RadiusCap
from followup.pipelines.zone_search import (
    SEARCH_RADIUS_GOOD_MM,
    SEARCH_RADIUS_POOR_MM,
    ZoneSearch,
    find_zone,
)
from followup.procedure import ProcedureRecord

ALGORITHM_NAME = "followup-residual"
ALGORITHM_VERSION = __version__  # = followup.ALGORITHM_VERSION
ROI_HALF_MM = 55.0
# The analysis box is cut again around the zone found in the follow-up when its centre lies this
# far from the mapped tumour (the box's centre): the rim and the foci band stay inside the box.
RECENTRE_ROI_MM = 12.0
S0_FLOOR_FRACTION = 0.25  # pre-contrast signal below 25 % of the ROI's 95th percentile: no ratio


class AnalysisError(FollowupError):
    code = "analysis"


def check_inputs(followup: DCEStudy, record: ProcedureRecord) -> int:
    """Refuse a follow-up that does not belong to the record (no report may be written for it);
    the days from the procedure to the follow-up otherwise."""
    if followup.patient_id.strip() != record.patient_id.strip():
        raise AnalysisError("the follow-up study's Patient ID does not match the procedure record's "
                            "patient_id: the record belongs to another patient", code="patient-mismatch")
    if followup.study_date is None:
        raise AnalysisError("the follow-up study has no StudyDate: days since the procedure unknown",
                            code="no-study-date")
    if followup.study_date < record.procedure_date:
        raise AnalysisError(
            f"the follow-up study ({followup.study_date}) is dated before the procedure "
            f"({record.procedure_date}): it is a baseline candidate, not a follow-up",
            code="before-procedure")
    return (followup.study_date - record.procedure_date).days


def deferred(record: ProcedureRecord, days: int) -> Assessment:
    start = record.procedure_date + dt.timedelta(days=ev.MIN_DAYS_AFTER_PROCEDURE)
    reason = (f"study taken {days} days after the procedure: enhancement before 3 weeks "
              f"({ev.MIN_DAYS_AFTER_PROCEDURE} days) gives false positives; "
              f"analysable from {start.isoformat()}")
    caveats = [*always_caveats(), Note("early-timing", "Early post-procedure enhancement "
                                       "(hyperaemia, inflammation) mimics residual tumour before 3 weeks."),
               *record_caveats(record)]
    return Assessment(
        Status.DEFERRED, reason, days, analysable_from=start,
        birads=categorise("deferred", None, imaging_used=False, suspicious_at_site=False,
                          benign_appearance=False, confidence_normal=False, repeat_from=start.isoformat()),
        caveats=tuple(caveats), contraindications=contraindications(record),
        recommendations=(Note("repeat-after", f"Repeat the MRI on or after {start.isoformat()} "
                              f"(>= {ev.MIN_DAYS_AFTER_PROCEDURE} days after the procedure)."),
                         *_record_biopsy(record)))


def failed(record: ProcedureRecord, days: int | None, reason: str) -> Assessment:
    return Assessment(
        Status.FAILED, reason, days,
        birads=categorise("failed", None, imaging_used=False, suspicious_at_site=False,
                          benign_appearance=False, confidence_normal=False),
        caveats=tuple(always_caveats() + record_caveats(record)), contraindications=contraindications(record),
        recommendations=(Note("radiologist-review", "No automatic assessment: the radiologist reads "
                              "the study; " + reason + "."), *_record_biopsy(record)))


def _record_biopsy(record: ProcedureRecord) -> tuple[Note, ...]:
    """Peripheral biopsies the record alone calls for (in situ, lobular): said even without a read."""
    reasons = record_rules.biopsy_reasons(record)
    return (Note("peripheral-biopsy", "Peripheral biopsies around the ablation zone are recommended: "
                 + "; ".join(reasons) + "."),) if reasons else ()


StageRunner = Callable[..., Any]


def run_directly(stage: str, fn: Callable[..., Any], *args: Any) -> Any:
    """The default stage runner: call the stage (callers that time stages pass their own)."""
    return fn(*args)


def assess(baseline: DCEStudy | None, followup: DCEStudy, record: ProcedureRecord,
           baseline_problem: str | None = None, run_stage: StageRunner = run_directly, *,
           days: int | None = None, read_breast: bool = True) -> Assessment:
    """Assess one follow-up. ``baseline`` None (with ``baseline_problem``) gives a failed analysis.

    ``days``: what :func:`check_inputs` returned, when the caller ran it already (the job does,
    before it reads the baseline); None runs it here. Each step goes through
    ``run_stage(name, function, *args)`` (default: just call it), so the caller can time the
    stages (registration, motion, enhancement, segmentation, scoring) without this function
    knowing about clocks. ``read_breast`` False: no nipple, location, composition or BPE (an earlier
    follow-up read only to be compared: its zone and foci are what is used)."""
    if days is None:
        days = check_inputs(followup, record)
    if days < ev.MIN_DAYS_AFTER_PROCEDURE:
        return deferred(record, days)
    if baseline is None:
        return failed(record, days, baseline_problem or "no baseline study")
    if baseline.patient_id.strip() != record.patient_id.strip():
        return failed(record, days, "the baseline study belongs to another patient")
    if baseline.study_date and baseline.study_date > record.procedure_date:
        return failed(record, days, f"the baseline study ({baseline.study_date}) is dated after the "
                      f"procedure ({record.procedure_date})")
    if len(followup.phases) < 2:
        return failed(record, days, "the follow-up dynamic has no post-contrast phase")
    centre_b = np.asarray(record.lesion.center_lps_mm, dtype=float)
    base_pre = baseline.phases[0].volume
    ijk = base_pre.world_to_voxel(centre_b)
    if np.any(ijk < -0.5) or np.any(ijk > np.asarray(base_pre.shape) - 0.5):
        return failed(record, days, f"the lesion centre {centre_b.round(1).tolist()} (LPS mm) lies "
                      "outside the baseline volume: check center_lps_mm and the baseline study")

    reg = run_stage("registration", register, followup.phases[0].volume, base_pre, centre_b)
    centre_f = reg.baseline_to_followup(centre_b)[0]
    volumes = [p.volume for p in followup.phases]
    roi = run_stage("motion", realign_phases, volumes, centre_f, ROI_HALF_MM)
    maps = run_stage("enhancement", _maps, roi)
    # The zone is found in the follow-up itself, seeded by the mapped tumour (a small search when
    # registration is good, a wide one, with the recorded site, when it is poor).
    good = reg.quality == Quality.GOOD
    seeds = [centre_f] if good else [centre_f, *_inside_box(roi, centre_b)]
    search = run_stage("segmentation", find_zone, roi.phases[0], maps.pe_peak, maps.valid,
                       roi.grid.affine, np.array(seeds),
                       SEARCH_RADIUS_GOOD_MM if good else SEARCH_RADIUS_POOR_MM,
                       record.lesion.diameter_mm, record.margin_mm)
    if search.found and np.linalg.norm(search.centre_lps - centre_f) > RECENTRE_ROI_MM:
        roi = run_stage("motion", realign_phases, volumes, search.centre_lps, ROI_HALF_MM)
        maps = run_stage("enhancement", _maps, roi)
    before = run_stage("enhancement", _before, baseline, roi, reg, record) if good else None
    seg = run_stage("segmentation", segment, roi.phases, maps, roi.grid.affine, centre_f,
                    record.lesion.diameter_mm / 2.0, record.margin_mm,
                    search.centre_lps if search.found else None, None, before)
    imaging = imaging_evidence(reg, seg, search)
    probability = run_stage("scoring", residual_probability, record, imaging, days)
    breast = run_stage("breast", read_followup_breast, followup, record.laterality, maps.s0_ceiling is None,
                       seg.zone.centre_lps, float(np.max(seg.zone.axes_mm)) / 2.0) if read_breast else None
    a = Assessment(
        Status.COMPLETE, None, days, probability=probability, registration=reg,
        tumour_center_followup=centre_f, roi=roi, maps=maps, segmentation=seg, zone_search=search,
        caveats=tuple(always_caveats() + record_caveats(record)
                      + _analysis_caveats(record, followup, reg, seg, search)),
        contraindications=contraindications(record),
        warnings=tuple(followup.warnings) + tuple(baseline.warnings), breast=breast, enhancement_before=before)
    return concluded(a, record, imaging)


def resegmented(a: Assessment, record: ProcedureRecord, followup: DCEStudy, radius_cap: RadiusCap,
                registered: bool = True) -> Assessment:
    """``a`` (complete) with its zone, rim and foci found again with ``radius_cap`` (the earlier
    exam's zone carried forward: :mod:`followup.pipelines.zone_prior`; ``registered``: through the
    registration between them, else its size alone), and the probability, caveats, category and
    recommendations that follow from them."""
    assert a.roi is not None and a.maps is not None and a.registration is not None
    assert a.tumour_center_followup is not None and a.zone_search is not None
    seg = segment(a.roi.phases, a.maps, a.roi.grid.affine, a.tumour_center_followup,
                  record.lesion.diameter_mm / 2.0, record.margin_mm,
                  a.zone_search.centre_lps if a.zone_search.found else None, radius_cap, a.enhancement_before)
    imaging = imaging_evidence(a.registration, seg, a.zone_search)
    probability = residual_probability(record, imaging, a.days_since_procedure)
    caveats = always_caveats() + record_caveats(record) + _analysis_caveats(record, followup, a.registration,
                                                                            seg, a.zone_search)
    if seg.zone.edge_from_prior_share > 0:
        source = ("the earlier follow-up's zone" if registered else
                  "the earlier follow-up's longest zone radius (that follow-up could not be registered with "
                  "this one)")
        caveats.append(Note("zone-edge-from-prior", f"In {100 * seg.zone.edge_from_prior_share:.0f}% of "
                            "directions no rim or signal change showed the ablation zone's edge: there it "
                            f"was taken from {source} (the zone involutes), so the volume there is an "
                            "upper bound."))
    return concluded(replace(a, segmentation=seg, probability=probability, caveats=tuple(caveats)),
                     record, imaging)


def suspicious_site_nme(seg: Segmentation) -> list[NonMassEnhancement]:
    """Suspicious non-mass enhancement at or extending from the site."""
    return [m for m in seg.nme if m.suspicious and m.distance_to_zone_edge_mm <= SITE_BAND_MM]


def benign_appearance(seg: Segmentation) -> bool:
    """The benign post-treatment appearance: no enhancing finding at the site (no focus, no
    suspicious non-mass enhancement), a uniform thin rim of slow persistent enhancement
    (clinical-evidence.md: the "cryohalo")."""
    rim = seg.rim
    at_site = [f for f in seg.foci if f.distance_to_zone_edge_mm <= SITE_BAND_MM]
    return not at_site and not suspicious_site_nme(seg) and rim.uniform and rim.initial_phase == "slow" \
        and rim.curve_type == "persistent"


def concluded(a: Assessment, record: ProcedureRecord, imaging: ImagingEvidence,
              trend_reason: str | None = None) -> Assessment:
    """``a`` with its BI-RADS category and recommendations, from its probability and findings."""
    assert a.probability is not None and a.segmentation is not None  # a complete assessment
    site = [f for f in a.suspicious_foci if f.distance_to_zone_edge_mm <= SITE_BAND_MM]
    nme = suspicious_site_nme(a.segmentation)
    birads = category(a.probability, site, imaging_used=imaging.reliable,
                      benign_appearance=benign_appearance(a.segmentation), suspicious_nme=nme)
    recs = recommendations(record, a.probability, birads, a.segmentation.foci,
                           registration_poor=a.registration_poor, zone_found=a.zone_found,
                           trend_reason=trend_reason, nme=a.segmentation.nme, where=_where(a))
    a = replace(a, birads=birads, recommendations=tuple(recs))
    if a.probability is not None and a.probability.counted_nme is not None:
        note = Note("nme-ratio-assumed", "The non-mass enhancement's weight in the probability is an assumption "
                    "(no published figure after cryoablation: it is counted as a positive MRI read with a mass's "
                    "ratio and its curve's): the probability is uncertain, the category and biopsy advice are not.")
        a = replace(a, caveats=(*(c for c in a.caveats if c.code != note.code), note))
    if a.breast is not None and a.breast.marked_bpe and a.probability is not None:
        # ACR BI-RADS: marked background enhancement can hide a finding or mimic one
        note = Note("marked-bpe", "Background parenchymal enhancement of the treated breast is marked: "
                    "enhancement at the site can be hidden by it or mistaken for it; the confidence is low.")
        a = replace(a, probability=replace(a.probability, confidence=Confidence.LOW),
                    caveats=(*(c for c in a.caveats if c.code != "marked-bpe"), note))
    return a


def _where(a: Assessment) -> Callable[[np.ndarray], str | None] | None:
    """A point's clock face and distance from the nipple (None: the nipple was not found)."""
    return a.breast.location_text if a.breast is not None and a.breast.nipple.found else None


def _analysis_caveats(record: ProcedureRecord, followup: DCEStudy, reg: RegistrationResult,
                      seg: Segmentation, search: ZoneSearch) -> list[Note]:
    """What the analysis itself leaves uncertain: registration, zone, margin, phases."""
    used = imaging_evidence(reg, seg, search).reliable
    out: list[Note] = []
    if reg.quality == Quality.POOR and used:
        out.append(Note("poor-registration", "Registration to the baseline was poor ("
                              + "; ".join(reg.reasons) + "): the ablation zone was found in the "
                              "follow-up itself and its findings are used, but the margin around "
                              "the mapped tumour is not scored, the zone's identity is uncertain, "
                              "the confidence is low and the interval is wider."))
    elif reg.quality == Quality.POOR:
        out.append(Note("poor-registration", "Registration to the baseline was poor ("
                              + "; ".join(reg.reasons) + ") and the ablation zone was not found "
                              "reliably in the follow-up: the imaging findings are not used and the "
                              "interval spans every imaging outcome."))
    n = sum(1 for f in seg.foci if f.present_before and f.distance_to_zone_edge_mm <= SITE_BAND_MM) \
        + sum(1 for m in seg.nme if m.present_before and m.distance_to_zone_edge_mm <= SITE_BAND_MM)
    if n:
        out.append(Note("present-before", f"{n} enhancing region{'s' if n > 1 else ''} at the site "
                        f"{'were' if n > 1 else 'was'} already enhancing at the same place on the pre-procedure "
                        "MRI, outside the treated volume, without washout (non-mass enhancement: focal or regional "
                        "only, never along a duct): read as background parenchymal "
                        "enhancement, not counted as suspicious. This assumes the pre-procedure MRI showed no "
                        "other lesion there (the indication is unifocal disease); background enhancement "
                        "varies with the menstrual cycle and hormonal treatment."))
    fat = [f for f in seg.foci if f.fat_centre and f.distance_to_zone_edge_mm <= SITE_BAND_MM]
    if fat:
        out.append(Note("fat-center", f"{len(fat)} enhancing ring{'s' if len(fat) > 1 else ''} at the site "
                        f"surround{'' if len(fat) > 1 else 's'} a non-enhancing centre with fat's signal before "
                        "contrast (fat not suppressed): fat necrosis, a fat-containing mass, read as benign "
                        "whatever its curve. Compare with a non-fat-suppressed T1 series if in doubt."))
    if not search.found:
        out.append(Note("zone-not-found", "The ablation zone was not found in the follow-up "
                              f"itself ({search.reason}): it was outlined around the mapped tumour."))
    if seg.zone.leaked:
        out.append(Note("zone-edge-not-found", "The edge of the ablation zone was not found in "
                              "every direction: zone size and margin are uncertain" + (
                                  "; the suspicious focus at the site is used." if used else
                                  ", and a negative read of a site not fully outlined cannot be "
                                  "trusted: the imaging findings are not used and the interval "
                                  "spans every imaging outcome.")))
    if not seg.zone.covers_margin:
        if reg.quality == Quality.POOR:
            out.append(Note("margin-not-scored", "Margin coverage around the mapped tumour is "
                                  "not scored: registration was poor, so the tumour's place in the "
                                  f"zone is unknown (smallest margin measured "
                                  f"{seg.zone.smallest_margin_mm:.1f} mm)."))
        else:
            out.append(Note("margin-not-covered", f"The ablation zone does not cover the tumour "
                                  f"plus its {record.margin_mm:g} mm margin everywhere (smallest "
                                  f"margin {seg.zone.smallest_margin_mm:.1f} mm)."))
    if len(followup.phases) < 3:
        out.append(Note("no-delayed-phase", "Only one post-contrast phase: no curve type."))
    if any("description" in w.lower() for w in followup.warnings):
        out.append(Note("phase-order-uncertain", "Phases were ordered by series description "
                              "only; check the order."))
    return out


def _maps(roi: AlignedRoi) -> EnhancementMaps:
    """The enhancement maps, taken against the tissue's pre-contrast signal where fat is not
    suppressed (``enhancement.unsuppressed_fat_ceiling``)."""
    s0 = roi.phases[0]
    maps = enhancement_maps(roi.phases, S0_FLOOR_FRACTION * float(np.percentile(s0, 95)))
    ceiling = unsuppressed_fat_ceiling(s0, maps.pe_peak, maps.valid)
    if ceiling is None:
        return maps
    # without fat suppression the 95th percentile is fat's: the floor is a share of the tissue's
    return enhancement_maps(roi.phases, S0_FLOOR_FRACTION * ceiling, ceiling)


def _before(baseline: DCEStudy, roi: AlignedRoi, reg: RegistrationResult,
            record: ProcedureRecord) -> EnhancementBefore | None:
    """The baseline's initial enhancement on the analysis grid (None: the baseline has no
    post-contrast phase)."""
    if len(baseline.phases) < 2:
        return None
    return enhancement_before(baseline.phases[0].volume, baseline.phases[1].volume, roi.grid.shape,
                              roi.grid.affine, reg.local_matrix, np.asarray(record.lesion.center_lps_mm, float),
                              record.lesion.diameter_mm / 2.0, record.margin_mm)


def _inside_box(roi: AlignedRoi, point: np.ndarray) -> list[np.ndarray]:
    """``[point]`` when it lies in the analysis box, else ``[]``."""
    ijk = roi.grid.world_to_voxel(np.asarray(point, dtype=float))
    inside = np.all(ijk >= -0.5) and np.all(ijk <= np.asarray(roi.grid.shape) - 0.5)
    return [np.asarray(point, dtype=float)] if inside else []


def imaging_evidence(reg: RegistrationResult, seg: Segmentation,
                     search: ZoneSearch | None) -> ImagingEvidence:
    """What the imaging tells the model. A zone found in the follow-up is used whatever the
    registration (a poor one only withholds the margin and lowers the confidence); without it,
    the zone outlined around the mapped tumour is used only when registration was good.

    A zone whose edge was not found in every direction (``leaked``) still counts a suspicious
    focus at the site (what is seen is seen), but a negative read of it is not trusted: part of
    the site was not delineated, so without a focus the imaging is not used. A focus whose curve is
    not assessable (phases misaligned) counts as a mass with no curve: its morphology alone.
    Suspicious non-mass enhancement counts as a finding too (the model counts one finding at the
    site: a focus or an NME, the more suspicious)."""
    good = reg.quality == Quality.GOOD
    found = search is not None and search.found
    foci = tuple(FocusEvidence(f.curve_type if f.kinetics_reliable else NOT_ASSESSABLE,
                               f.largest_diameter_mm, f.distance_to_zone_edge_mm)
                 for f in seg.foci if f.suspicious)
    nme = tuple(NmeEvidence(m.curve_type if m.kinetics_reliable else NOT_ASSESSABLE, m.extent_mm,
                            m.distance_to_zone_edge_mm, str(m.distribution))
                for m in seg.nme if m.suspicious)
    located = found or good
    reliable = located and (not seg.zone.leaked or bool(site_findings(ImagingEvidence(foci, nme))))
    margin = None if seg.zone.leaked else seg.zone.covers_margin  # a leaked edge measures no margin
    return ImagingEvidence(foci=foci, nme=nme, margin_covered=margin, reliable=reliable, location_confirmed=good)


__all__ = ["ALGORITHM_NAME", "ALGORITHM_VERSION", "AnalysisError", "Assessment", "Note", "Status", "assess",
           "benign_appearance", "check_inputs", "concluded", "deferred", "failed", "imaging_evidence", "resegmented",
           "site_foci", "suspicious_site_nme"]
