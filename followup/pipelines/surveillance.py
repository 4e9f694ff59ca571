"""A follow-up read with the patient's earlier follow-ups (issue 14, longitudinal surveillance).

The current follow-up is assessed against the baseline as always
(:func:`followup.pipelines.assess.assess`). Then each earlier follow-up ("prior") is assessed
against the same baseline (the same analysis: its zone, rim and foci) and registered to the
current follow-up (:func:`followup.pipelines.registration.driver.register`, the prior's pre-contrast phase
moving onto the current one's, refined around the prior's ablation zone). The chain is checked
against the baseline mapping: current -> prior -> baseline must land where current -> baseline
does at the treated site (:data:`followup.pipelines.longitudinal.CHAIN_TOLERANCE_MM`). The
prior's findings are carried into the current follow-up's space through the direct registration
when it is good, else through the baseline (both registrations to the baseline good), else not at
all (its volumes are still compared, its foci are not).

The comparison itself is pure (:mod:`followup.pipelines.longitudinal`). In surveillance
(``evidence.SURVEILLANCE_FROM_DAYS`` on) the question is recurrence: each earlier follow-up read
negative at the site lowers the prior, recurrence by time since the procedure (ICE3) raises it, an
involuting zone lowers it a little, and a growing zone or new / grown nodular enhancement raises it
(likelihood ratios that are assumptions: no published figure) and recommends a biopsy. Pure:
studies in memory in, a new ``Assessment`` out (``dataclasses.replace``), with ``longitudinal`` set.
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping, Sequence
from dataclasses import replace

import numpy as np

from followup.dicom.study import DCEStudy
from followup.pipelines.assess import (
    StageRunner,
    assess,
    check_inputs,
    concluded,
    imaging_evidence,
    resegmented,
    run_directly,
)
from followup.pipelines.assessment import Assessment, LongitudinalRead, Note, PriorRead, Status
from followup.pipelines.longitudinal import (
    CHAIN_TOLERANCE_MM,
    FocusMeasure,
    Longitudinal,
    TimePointMeasure,
    chain_discrepancy_mm,
    likelihood_factor,
    map_points,
    summarise,
)
from followup.pipelines.probability import History, residual_probability, site_findings
from followup.pipelines.registration.driver import register
from followup.pipelines.registration.result import RegistrationResult
from followup.pipelines.zone_prior import radius_cap, unregistered_cap
from followup.procedure import ProcedureRecord

log = logging.getLogger(__name__)


def measure(a: Assessment, study: DCEStudy, days: int | None, to_current: np.ndarray | None, *,
            current: bool = False, mapping: str = "self", registration: RegistrationResult | None = None,
            chain_mm: float | None = None) -> TimePointMeasure:
    """A time point's numbers from its assessment; focus centres mapped by ``to_current`` (4 x 4,
    this study's LPS -> the current follow-up's; None: not mappable)."""
    seg = a.segmentation
    if a.status != "complete" or seg is None:
        return TimePointMeasure(study.study_uid, study.study_date, days, a.status, current,
                                mapping=mapping, reason=a.reason)
    foci = tuple(FocusMeasure(None if to_current is None else map_points(to_current, f.centre_lps)[0],
                              float(f.largest_diameter_mm), f.curve_type, float(f.distance_to_zone_edge_mm),
                              float(f.peak_pe), bool(f.suspicious)) for f in seg.foci)
    return TimePointMeasure(
        study.study_uid, study.study_date, days, a.status, current,
        zone_volume_ml=float(seg.zone.volume_ml), zone_axes_mm=tuple(float(x) for x in seg.zone.axes_mm),
        rim_thickness_mm=float(seg.rim.thickness_mm), rim_curve_type=seg.rim.curve_type,
        rim_initial_enhancement_pct=float(seg.rim.initial_pe),
        rim_delayed_change_pct=float(seg.rim.delayed_change_pct), foci=foci, mapping=mapping,
        registration_quality=None if registration is None else registration.quality,
        chain_discrepancy_mm=chain_mm, zone_edge_from_prior_share=float(seg.zone.edge_from_prior_share))


def _prior_assessment(prior: DCEStudy, baseline: DCEStudy | None, record: ProcedureRecord,
                      run_stage: StageRunner, known: MutableMapping[str, Assessment] | None) -> Assessment:
    if known is not None and prior.study_uid in known:
        return known[prior.study_uid]
    try:
        a = assess(baseline, prior, record, run_stage=run_stage, read_breast=False)  # compared, not reported
    except Exception as exc:  # noqa: BLE001  (a prior that cannot be read must not fail the current one)
        log.warning("earlier follow-up %s not assessed (%s)", prior.study_uid, type(exc).__name__)
        a = Assessment(Status.FAILED, f"not assessed ({type(exc).__name__})", None)
    if known is not None:
        known[prior.study_uid] = a
    return a


def read_prior(current: Assessment, followup: DCEStudy, prior: DCEStudy, baseline: DCEStudy | None,
               record: ProcedureRecord, run_stage: StageRunner = run_directly,
               known: MutableMapping[str, Assessment] | None = None) -> PriorRead:
    """Assess one earlier follow-up and register it to the current one (see the module)."""
    a = _prior_assessment(prior, baseline, record, run_stage, known)
    days = None if prior.study_date is None else (prior.study_date - record.procedure_date).days
    if a.status != "complete" or a.segmentation is None or a.registration is None \
            or current.registration is None or current.tumour_center_followup is None:
        return PriorRead(prior, a, measure(a, prior, days, None, mapping="none"), None, None)
    reg = run_stage("registration", register, followup.phases[0].volume, prior.phases[0].volume,
                    a.segmentation.zone.centre_lps)
    m_cb, m_pb = current.registration.local_matrix, a.registration.local_matrix
    chain = chain_discrepancy_mm(m_cb, reg.local_matrix, m_pb, current.tumour_center_followup)
    via_baseline_ok = current.registration.quality == "good" and a.registration.quality == "good"
    if reg.quality == "good" and (chain <= CHAIN_TOLERANCE_MM or not via_baseline_ok):
        mapping, m_cp = "direct", reg.local_matrix
    elif via_baseline_ok:
        mapping, m_cp = "via-baseline", np.linalg.inv(m_pb) @ m_cb
    else:
        mapping, m_cp = "none", None
    to_current = None if m_cp is None else np.linalg.inv(m_cp)
    point = measure(a, prior, days, to_current, mapping=mapping, registration=reg, chain_mm=chain)
    return PriorRead(prior, a, point, reg, m_cp)


def usable_priors(followup: DCEStudy, priors: Sequence[DCEStudy], record: ProcedureRecord) -> list[DCEStudy]:
    """The earlier follow-ups that can be compared: the record's patient, after the procedure, before
    the current follow-up (by date), not the current study; by date."""
    out = []
    for p in priors:
        if p.study_uid == followup.study_uid or p.study_date is None or followup.study_date is None:
            continue
        if p.patient_id.strip() != record.patient_id.strip():
            continue
        if record.procedure_date <= p.study_date <= followup.study_date:
            out.append(p)
    return sorted(out, key=lambda p: (p.study_date, p.study_uid))


def assess_with_priors(baseline: DCEStudy | None, followup: DCEStudy, priors: Sequence[DCEStudy],
                       record: ProcedureRecord, baseline_problem: str | None = None,
                       run_stage: StageRunner = run_directly, *, days: int | None = None,
                       known: MutableMapping[str, Assessment] | None = None) -> Assessment:
    """The current follow-up assessed, then compared with every usable prior (see the module).

    ``known``: assessments of priors already made, by Study Instance UID (filled as priors are
    assessed; a series read time point after time point assesses each study once)."""
    if days is None:
        days = check_inputs(followup, record)
    a = assess(baseline, followup, record, baseline_problem, run_stage, days=days)
    if known is not None:
        known[followup.study_uid] = a
    usable = usable_priors(followup, priors, record)
    if a.status != "complete" or not usable or a.segmentation is None:
        return a
    reads = tuple(read_prior(a, followup, p, baseline, record, run_stage, known) for p in usable)
    a = _with_zone_prior(a, record, followup, reads, run_stage)
    if known is not None:
        known[followup.study_uid] = a  # a later follow-up carries this zone forward
    current = measure(a, followup, days, np.eye(4), current=True)
    summary = summarise([*(r.measure for r in reads), current])
    return _apply(a, summary, record, reads)


def _with_zone_prior(a: Assessment, record: ProcedureRecord, followup: DCEStudy,
                     reads: Sequence[PriorRead], run_stage: StageRunner) -> Assessment:
    """``a`` with its zone found again bounded by the latest earlier zone that maps into it
    (:mod:`followup.pipelines.zone_prior`: where no rim ends a ray), or, where none could be
    registered, by the latest one's size (:func:`followup.pipelines.zone_prior.unregistered_cap`);
    ``a`` itself when no earlier zone was measured.
    The zone found with the cap is kept even where no ray ended at the cap: the cap also decides
    which rims past a step are the zone's (:func:`followup.pipelines.segmentation.zone.cast_zone_rays`)."""
    measured = [r for r in reads if r.assessment.segmentation is not None and r.assessment.roi is not None
                and not r.assessment.segmentation.zone.leaked]
    for r in reversed(measured):
        if r.current_to_prior is not None:
            seg, roi = r.assessment.segmentation, r.assessment.roi
            assert seg is not None and roi is not None
            cap = radius_cap(seg.zone.mask, roi.grid.affine, r.current_to_prior)
            return run_stage("segmentation", resegmented, a, record, followup, cap)
    if measured:  # none registered: the latest one's size still bounds the zone
        seg = measured[-1].assessment.segmentation
        assert seg is not None
        return run_stage("segmentation", resegmented, a, record, followup, unregistered_cap(seg.zone.ray_radius_mm),
                         False)
    return a


def _negative_reads(reads: Sequence[PriorRead]) -> int:
    """Earlier follow-ups read at the site without suspicious enhancement (imaging used)."""
    n = 0
    for r in reads:
        pa = r.assessment
        if pa.status == Status.COMPLETE and pa.registration is not None and pa.segmentation is not None:
            im = imaging_evidence(pa.registration, pa.segmentation, pa.zone_search)
            n += int(im.reliable and not site_findings(im))
    return n


def _apply(a: Assessment, lon: Longitudinal, record: ProcedureRecord, reads: Sequence[PriorRead]) -> Assessment:
    """The history in the probability (earlier negative reads, the trend), the category and
    recommendations again, the caveats of the comparison: a new assessment."""
    assert a.registration is not None and a.segmentation is not None  # a complete assessment
    factor = likelihood_factor(lon)
    evidence = imaging_evidence(a.registration, a.segmentation, a.zone_search)
    history = History(_negative_reads(reads), factor)
    probability = residual_probability(record, evidence, a.days_since_procedure, history=history)
    caveats = list(a.caveats)
    for r in reads:
        m = r.measure
        when = m.date.isoformat() if m.date else r.study.study_uid
        if m.status != "complete":
            caveats.append(Note("prior-not-measured", f"The earlier follow-up of {when} could not be "
                                f"measured ({m.status}: {m.reason}); it is not compared."))
        elif m.mapping == "none":
            caveats.append(Note("prior-not-registered", f"The earlier follow-up of {when} could not be "
                                "registered to this one: its volumes are compared, its foci are not."))
        elif m.chain_discrepancy_mm is not None and m.chain_discrepancy_mm > CHAIN_TOLERANCE_MM:
            caveats.append(Note("prior-chain-inconsistent", f"Registrations of the follow-up of {when} "
                                f"disagree by {m.chain_discrepancy_mm:.1f} mm at the treated site "
                                f"(direct vs through the baseline; mapping used: {m.mapping})."))
    raised = factor is not None and factor[1].value > 1.0 and evidence.reliable
    trend_reason = f"{lon.reason} (trend: {lon.trend})" if raised else None
    new = replace(a, probability=probability, longitudinal=LongitudinalRead(lon, tuple(reads)),
                  caveats=tuple(caveats))
    return concluded(new, record, evidence, trend_reason)


__all__ = ["LongitudinalRead", "PriorRead", "assess_with_priors", "measure", "read_prior", "usable_priors"]
