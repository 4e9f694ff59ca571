"""Canonical clinical cases read through the probability model and the conclusion (no images).

Each :class:`Scenario` is a procedure record, what the MRI showed at the site (nothing, or one
suspicious finding with its curve), the days since the procedure and, in surveillance, the earlier
reads. :func:`run` gives, for each, the probability, its interval, the BI-RADS category, the
recommendations and the contraindication banner, exactly as an analysis would conclude them
(:mod:`followup.pipelines.probability`, :mod:`followup.pipelines.conclusion`). Used by
``benchmarks/clinical_scenarios.py`` (the table in ``benchmarks/results/clinical-scenarios.md``)
and by the safety tests (tests/unit/pipelines/test_clinical_scenarios.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from followup import evidence as ev
from followup.pipelines.assessment import Note
from followup.pipelines.birads import BiradsAssessment
from followup.pipelines.conclusion import category, contraindications, recommendations
from followup.pipelines.enhancement import CurveType
from followup.pipelines.longitudinal import LR_NEW_ENHANCEMENT
from followup.pipelines.probability import (
    FocusEvidence,
    History,
    ImagingEvidence,
    ProbabilityResult,
    residual_probability,
)
from followup.pipelines.segmentation.model import Focus
from followup.procedure import ProcedureRecord, parse_procedure


def record(diameter_mm: float = 12.0, histology: str = "IDC", dcis_pct: float = 0.0,
           insitu_grade: str | None = None, cycles: int = 2) -> ProcedureRecord:
    return parse_procedure({
        "patient_id": "SCENARIO", "procedure_date": "2026-01-05", "laterality": "L",
        "lesion": {"center_lps_mm": [10.0, -60.0, 5.0], "diameter_mm": diameter_mm, "histology": histology,
                   "grade": 2, "dcis_component_pct": dcis_pct, "insitu_grade": insitu_grade},
        "freeze_thaw_cycles": cycles, "margin_mm": 10.0})


@dataclass(frozen=True)
class Scenario:
    name: str
    record: ProcedureRecord
    days: int = 30
    finding: tuple[str, float] | None = None  # (curve, largest diameter mm) of a suspicious finding
    history: History = field(default_factory=History)


def focus(curve: str, diameter_mm: float, edge_mm: float = 0.0) -> Focus:
    """A suspicious nodular finding at the zone edge (the segmentation's value, no image)."""
    return Focus(1, np.zeros((1, 1, 1), bool), np.array([10.0, -60.0, 5.0]), np.pi / 6 * diameter_mm ** 3,
                 diameter_mm, diameter_mm, 150.0, 120.0, 1.0, 0.0, CurveType(curve), "fast", edge_mm, True,
                 [f"nodular mass {diameter_mm:g} mm at the zone edge"])


_NEW = ("surveillance: new nodular enhancement at the site since the previous follow-up", LR_NEW_ENHANCEMENT)
_INVOLUTING = ("surveillance: ablation zone involuting (0.55 x the previous volume)", ev.LR_INVOLUTING)

SCENARIOS: tuple[Scenario, ...] = (
    Scenario("8 mm IDC, negative MRI", record(8.0)),
    Scenario("12 mm IDC, negative MRI", record(12.0)),
    Scenario("15 mm IDC, negative MRI", record(15.0)),
    Scenario("12 mm lobular carcinoma, negative MRI", record(12.0, "ILC")),
    Scenario("12 mm IDC, in-situ component of intermediate grade at 0%", record(12.0, insitu_grade="intermediate")),
    Scenario("12 mm pure DCIS (0% written), negative MRI", record(12.0, "DCIS")),
    Scenario("12 mm IDC, washout mass 8 mm at the zone edge", record(12.0), finding=("washout", 8.0)),
    Scenario("12 mm IDC, plateau mass 8 mm at the zone edge", record(12.0), finding=("plateau", 8.0)),
    Scenario("12 mm IDC, nodular mass 8 mm with a persistent curve", record(12.0), finding=("persistent", 8.0)),
    Scenario("12 mm IDC, a single freeze-thaw cycle, negative MRI", record(12.0, cycles=1)),
    Scenario("12 mm IDC, 12 months, zone involuting, 2 earlier negative reads", record(12.0), days=365,
             history=History(2, _INVOLUTING)),
    Scenario("12 mm IDC, 24 months, new 7 mm washout nodule, 3 earlier negative reads", record(12.0), days=730,
             finding=("washout", 7.0), history=History(3, _NEW)),
    Scenario("6 mm IDC, 36 months, zone involuting, 4 earlier negative reads", record(6.0), days=1095,
             history=History(4, _INVOLUTING)),
    Scenario("25 mm IDC, negative MRI", record(25.0)),
    Scenario("12 mm IDC, 30% in situ of low grade, negative MRI", record(12.0, "mixed", 30.0, "low")),
)


@dataclass(frozen=True)
class Outcome:
    scenario: Scenario
    probability: ProbabilityResult
    birads: BiradsAssessment
    recommendations: tuple[Note, ...]
    banner: tuple[Note, ...]


def run_one(s: Scenario) -> Outcome:
    foci = [focus(*s.finding)] if s.finding else []
    imaging = ImagingEvidence(tuple(FocusEvidence(str(f.curve_type), f.largest_diameter_mm,
                                                  f.distance_to_zone_edge_mm) for f in foci), margin_covered=True)
    p = residual_probability(s.record, imaging, s.days, history=s.history)
    b = category(p, foci, imaging_used=True, benign_appearance=not foci)
    trend = s.history.trend[0] if s.history.trend and s.history.trend[1].value > 1 else None
    recs = recommendations(s.record, p, b, foci, trend_reason=trend)
    return Outcome(s, p, b, tuple(recs), contraindications(s.record))


def run() -> list[Outcome]:
    return [run_one(s) for s in SCENARIOS]


__all__ = ["SCENARIOS", "Outcome", "Scenario", "focus", "record", "run", "run_one"]
