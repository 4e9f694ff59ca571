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
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from followup import __version__, evidence as ev
from followup.dicom.study import DCEStudy
from followup.errors import FollowupError
from followup.pipelines.enhancement import EnhancementMaps, enhancement_maps
from followup.pipelines.motion import AlignedRoi, realign_phases
from followup.pipelines.probability import (
    SITE_BAND_MM,
    FocusEvidence,
    ImagingEvidence,
    ProbabilityResult,
    residual_probability,
    site_foci,
)
from followup.pipelines.register import RegistrationResult, register
from followup.pipelines.segment import Focus, Segmentation, segment
from followup.pipelines.zone_search import (
    SEARCH_RADIUS_GOOD_MM,
    SEARCH_RADIUS_POOR_MM,
    ZoneSearch,
    find_zone,
)
from followup.procedure import (
    CR_HALVED_ABOVE_DIAMETER_MM,
    EXTENSIVE_DCIS_PCT,
    INDICATION_MAX_DIAMETER_MM,
    ProcedureRecord,
)

if TYPE_CHECKING:
    from followup.pipelines.surveillance import LongitudinalRead

ALGORITHM_NAME = "followup-residual"
ALGORITHM_VERSION = __version__  # = followup.ALGORITHM_VERSION
ROI_HALF_MM = 55.0
# The analysis box is cut again around the zone found in the follow-up when its centre lies this
# far from the mapped tumour (the box's centre): the rim and the foci band stay inside the box.
RECENTRE_ROI_MM = 12.0
S0_FLOOR_FRACTION = 0.25  # pre-contrast signal below 25 % of the ROI's 95th percentile: no ratio


@dataclass(frozen=True)
class Note:
    code: str
    text: str


@dataclass
class Assessment:
    status: str  # complete | deferred | failed
    reason: str | None
    days_since_procedure: int | None
    analysable_from: dt.date | None = None
    probability: ProbabilityResult | None = None
    registration: RegistrationResult | None = None
    tumour_center_followup: np.ndarray | None = None
    roi: AlignedRoi | None = None
    maps: EnhancementMaps | None = None
    segmentation: Segmentation | None = None
    zone_search: ZoneSearch | None = None  # the ablation zone as found in the follow-up itself
    # earlier follow-ups compared (issue 14; followup.pipelines.surveillance), None without priors
    longitudinal: LongitudinalRead | None = None
    caveats: list[Note] = field(default_factory=list)
    recommendations: list[Note] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def zone_found(self) -> bool:
        return self.zone_search is not None and self.zone_search.found

    @property
    def registration_poor(self) -> bool:
        return self.registration is not None and self.registration.quality == "poor"

    @property
    def suspicious_foci(self) -> list[Focus]:
        return [f for f in (self.segmentation.foci if self.segmentation else []) if f.suspicious]


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


def _always_caveats() -> list[Note]:
    lo, hi = ev.MRI_NPV_Z1072[1], ev.MRI_NPV_Z1072[2]
    return [
        Note("mri-npv", f"MRI's negative predictive value for residual invasive tumour after "
             f"cryoablation is only {ev.MRI_NPV_INVASIVE:.0%} (published: {ev.MRI_NPV_Z1072[0]:.1%}, "
             f"90% CI {lo:.1%}-{hi:.1%}, ACOSOG Z1072; 15/18 = 83%, Poplack 2015): a negative MRI "
             "does not exclude residual disease."),
        Note("insitu-invisible", f"{ev.INSITU_LOWGRADE_MRI_INVISIBLE:.0%} of low-grade in-situ lesions "
             "are not visible on MRI: MRI cannot exclude an in-situ component; peripheral biopsies "
             "exclude an extensive in-situ component."),
    ]


def _record_caveats(record: ProcedureRecord) -> list[Note]:
    les = record.lesion
    notes = []
    if les.diameter_mm > CR_HALVED_ABOVE_DIAMETER_MM:
        notes.append(Note("tumour-over-2cm", f"Tumour {les.diameter_mm:g} mm: above 2 cm the "
                          "complete-response rate of cryoablation is about halved."))
    elif les.diameter_mm >= INDICATION_MAX_DIAMETER_MM:
        notes.append(Note("outside-indication-size", f"Tumour {les.diameter_mm:g} mm: outside the "
                          "indication (unifocal cancer < 15 mm, 95-100% complete response)."))
    if les.histology == "ILC":
        notes.append(Note("lobular", "Lobular carcinoma is a contraindication to cryoablation; "
                          "MRI also tends to underestimate lobular disease."))
    if les.dcis_component_pct > EXTENSIVE_DCIS_PCT:
        notes.append(Note("extensive-dcis", f"Extensive in-situ component ({les.dcis_component_pct:g}% "
                          "> 25% of the biopsy) is a contraindication to cryoablation."))
    if les.dcis_component_pct > 0 or les.histology in ("DCIS", "mixed") or les.insitu_grade:
        grade = f", {les.insitu_grade} grade" if les.insitu_grade else ""
        notes.append(Note("insitu-component", f"In-situ component recorded ({les.dcis_component_pct:g}% "
                          f"of the biopsy{grade}): in-situ disease is the main blind spot of MRI."))
    if record.freeze_thaw_cycles < 2:
        notes.append(Note("single-freeze", f"{record.freeze_thaw_cycles} freeze-thaw cycle recorded; "
                          "the technique calls for at least 2."))
    return notes


def _biopsy_reasons(record: ProcedureRecord, a: Assessment) -> list[str]:
    les = record.lesion
    reasons = []
    if les.dcis_component_pct > 0 or les.histology in ("DCIS", "mixed"):
        reasons.append("an in-situ component is recorded")
    if les.insitu_grade == "low":
        reasons.append("low-grade in situ is recorded (31% are not visible on MRI)")
    if a.suspicious_foci:
        reasons.append("suspicious enhancement at the ablation site")
    if a.probability is not None and a.probability.probability >= ev.BIOPSY_PROBABILITY_THRESHOLD:
        reasons.append(f"the residual-tumour probability stays high "
                       f"({a.probability.probability:.0%} >= {ev.BIOPSY_PROBABILITY_THRESHOLD:.0%})")
    if a.probability is not None and a.probability.confidence == "low" and \
            a.probability.interval[1] >= ev.BIOPSY_PROBABILITY_THRESHOLD:
        reasons.append("the imaging could not be trusted fully and a high probability is not excluded")
    return reasons


def _recommendations(record: ProcedureRecord, a: Assessment) -> list[Note]:
    out = []
    reasons = _biopsy_reasons(record, a)
    if reasons:
        out.append(Note("peripheral-biopsy", "Peripheral biopsies around the ablation zone are "
                        "recommended: " + "; ".join(reasons) + "."))
    for f in a.suspicious_foci:
        if f.distance_to_zone_edge_mm <= SITE_BAND_MM:
            out.append(Note("targeted-biopsy",
                            f"Targeted biopsy (second-look ultrasound or MRI-guided) of the "
                            f"{f.curve_type} focus of {f.largest_diameter_mm:.0f} mm at LPS "
                            f"({', '.join(f'{v:.0f}' for v in f.centre_lps)}) mm."))
    remote = [f for f in (a.segmentation.foci if a.segmentation else [])
              if f.suspicious and f.distance_to_zone_edge_mm > SITE_BAND_MM]
    if remote:
        out.append(Note("remote-finding", f"{len(remote)} suspicious enhancing finding(s) more than "
                        f"{SITE_BAND_MM:g} mm from the ablation zone: assess on their own (BI-RADS)."))
    if a.registration_poor:
        where = ("the ablation zone was found in the follow-up itself; check that it is the treated "
                 "site" if a.zone_found else "the ablation zone could not be found either")
        out.append(Note("review-registration", "Check the mapped tumour position on the images: "
                        f"automatic registration to the baseline was poor ({where})."))
    if not reasons:
        out.append(Note("imaging-follow-up", "No biopsy indication from this study: continue imaging "
                        "surveillance (follow-up breast MRI at about 6 months, per local protocol)."))
    return out


def deferred(record: ProcedureRecord, days: int) -> Assessment:
    start = record.procedure_date + dt.timedelta(days=ev.MIN_DAYS_AFTER_PROCEDURE)
    reason = (f"study taken {days} days after the procedure: enhancement before 3 weeks "
              f"({ev.MIN_DAYS_AFTER_PROCEDURE} days) gives false positives; "
              f"analysable from {start.isoformat()}")
    a = Assessment("deferred", reason, days, analysable_from=start)
    a.caveats = [*_always_caveats(), Note("early-timing", "Early post-procedure enhancement "
                                          "(hyperaemia, inflammation) mimics residual tumour before 3 weeks.")]
    a.caveats += _record_caveats(record)
    a.recommendations = [Note("repeat-after", f"Repeat the MRI on or after {start.isoformat()} "
                              f"(>= {ev.MIN_DAYS_AFTER_PROCEDURE} days after the procedure).")]
    return a


def failed(record: ProcedureRecord, days: int | None, reason: str) -> Assessment:
    a = Assessment("failed", reason, days)
    a.caveats = _always_caveats() + _record_caveats(record)
    a.recommendations = [Note("radiologist-review", "No automatic assessment: the radiologist reads "
                              "the study; " + reason + ".")]
    return a


StageRunner = Callable[..., Any]


def _call(stage: str, fn: Callable[..., Any], *args: Any) -> Any:
    return fn(*args)


def assess(baseline: DCEStudy | None, followup: DCEStudy, record: ProcedureRecord,
           baseline_problem: str | None = None, run_stage: StageRunner = _call, *,
           days: int | None = None) -> Assessment:
    """Assess one follow-up. ``baseline`` None (with ``baseline_problem``) gives a failed analysis.

    ``days``: what :func:`check_inputs` returned, when the caller ran it already (the job does,
    before it reads the baseline); None runs it here. Each step goes through
    ``run_stage(name, function, *args)`` (default: just call it), so the caller can time the
    stages (registration, motion, enhancement, segmentation, scoring) without this function
    knowing about clocks."""
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

    a = Assessment("complete", None, days)
    a.warnings = list(followup.warnings) + list(baseline.warnings)
    reg = run_stage("registration", register, followup.phases[0].volume, base_pre, centre_b)
    a.registration = reg
    centre_f = reg.baseline_to_followup(centre_b)[0]
    a.tumour_center_followup = centre_f
    volumes = [p.volume for p in followup.phases]
    roi = run_stage("motion", realign_phases, volumes, centre_f, ROI_HALF_MM)
    maps = run_stage("enhancement", _maps, roi)
    # The zone is found in the follow-up itself, seeded by the mapped tumour (a small search when
    # registration is good, a wide one, with the recorded site, when it is poor).
    good = reg.quality == "good"
    seeds = [centre_f] if good else [centre_f, *_inside_box(roi, centre_b)]
    search = run_stage("segmentation", find_zone, roi.phases[0], maps.pe_peak, maps.valid,
                       roi.grid.affine, np.array(seeds),
                       SEARCH_RADIUS_GOOD_MM if good else SEARCH_RADIUS_POOR_MM,
                       record.lesion.diameter_mm, record.margin_mm)
    a.zone_search = search
    if search.found and np.linalg.norm(search.centre_lps - centre_f) > RECENTRE_ROI_MM:
        roi = run_stage("motion", realign_phases, volumes, search.centre_lps, ROI_HALF_MM)
        maps = run_stage("enhancement", _maps, roi)
    a.roi = roi
    a.maps = maps
    seg = run_stage("segmentation", segment, roi.phases, maps, roi.grid.affine, centre_f,
                    record.lesion.diameter_mm / 2.0, record.margin_mm,
                    search.centre_lps if search.found else None)
    a.segmentation = seg
    a.probability = run_stage("scoring", _score, record, reg, seg, search)
    a.caveats = _always_caveats() + _record_caveats(record) + _analysis_caveats(record, followup, reg, seg, search)
    a.recommendations = _recommendations(record, a)
    return a


def _analysis_caveats(record: ProcedureRecord, followup: DCEStudy, reg: RegistrationResult,
                      seg: Segmentation, search: ZoneSearch) -> list[Note]:
    """What the analysis itself leaves uncertain: registration, zone, margin, phases."""
    used = imaging_evidence(reg, seg, search).reliable
    out: list[Note] = []
    if reg.quality == "poor" and used:
        out.append(Note("poor-registration", "Registration to the baseline was poor ("
                              + "; ".join(reg.reasons) + "): the ablation zone was found in the "
                              "follow-up itself and its findings are used, but the margin around "
                              "the mapped tumour is not scored, the zone's identity is uncertain, "
                              "the confidence is low and the interval is wider."))
    elif reg.quality == "poor":
        out.append(Note("poor-registration", "Registration to the baseline was poor ("
                              + "; ".join(reg.reasons) + ") and the ablation zone was not found "
                              "reliably in the follow-up: the imaging findings are not used and the "
                              "interval spans every imaging outcome."))
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
        if reg.quality == "poor":
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
    s0 = roi.phases[0]
    return enhancement_maps(roi.phases, S0_FLOOR_FRACTION * float(np.percentile(s0, 95)))


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
    not assessable (phases misaligned) counts with the least suspicious curve, persistent."""
    good = reg.quality == "good"
    found = search is not None and search.found
    foci = tuple(FocusEvidence(f.curve_type if f.kinetics_reliable else "persistent",
                               f.largest_diameter_mm, f.distance_to_zone_edge_mm)
                 for f in seg.foci if f.suspicious)
    located = found or good
    reliable = located and (not seg.zone.leaked or bool(site_foci(ImagingEvidence(foci))))
    margin = None if seg.zone.leaked else seg.zone.covers_margin  # a leaked edge measures no margin
    return ImagingEvidence(foci=foci, margin_covered=margin, reliable=reliable, location_confirmed=good)


def _score(record: ProcedureRecord, reg: RegistrationResult, seg: Segmentation,
           search: ZoneSearch | None = None) -> ProbabilityResult:
    return residual_probability(record, imaging_evidence(reg, seg, search))


__all__ = ["ALGORITHM_NAME", "ALGORITHM_VERSION", "AnalysisError", "Assessment", "Note", "assess",
           "check_inputs", "deferred", "failed", "imaging_evidence", "site_foci"]
