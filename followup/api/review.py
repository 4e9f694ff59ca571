"""The reanalysis review: which results of a batch changed enough for a clinician to look again.

Each analysis of the batch is compared with the study's newest finished analysis before it
(outside the batch). A change is listed when the probability moved by at least
``THRESHOLD_POINTS`` percentage points, the status changed (a probability appeared or went), the
set of recommendations changed, or the longitudinal trend changed (issue 14's ``trend``, when the
reports have one). The comparison itself (``compare``) is pure.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from followup.api import report_files
from followup.api.models import BatchChanges, BatchOut, ChangeOut, ChangeSide, ReviewOut
from followup.pseudonym import patient_ref
from followup.service.patients import person_name
from followup.service.registry import Analysis, Registry, Study
from followup.states import TERMINAL_ANALYSIS

THRESHOLD_POINTS = 10.0


def _pct(p: float | None) -> str:
    return "none" if p is None else f"{100 * p:.0f} %"


def side(a: Analysis, data_root: Path) -> ChangeSide:
    report = report_files.report_json(report_files.report_dir(a, data_root))
    return ChangeSide(analysis_id=a.id, algorithm_version=a.algorithm_version, revision=a.revision, status=a.status,
                      probability=a.probability, interval_low=a.interval_low, interval_high=a.interval_high,
                      recommendations=list(report_files.recommendation_codes(report)),
                      trend=report_files.trend_of(report))


def compare(old: ChangeSide, new: ChangeSide, threshold_points: float = THRESHOLD_POINTS) -> list[str]:
    """Why the new result deserves a second look (empty: it does not)."""
    reasons = []
    if old.status != new.status:
        reasons.append(f"status {old.status} → {new.status}")
    if old.probability is not None and new.probability is not None:
        moved = 100 * (new.probability - old.probability)
        if abs(moved) >= threshold_points - 1e-9:
            reasons.append(f"probability {_pct(old.probability)} → {_pct(new.probability)} ({moved:+.0f} points)")
    elif (old.probability is None) != (new.probability is None):
        reasons.append(f"probability {_pct(old.probability)} → {_pct(new.probability)}")
    if old.recommendations != new.recommendations:
        reasons.append(f"recommendation {', '.join(old.recommendations) or 'none'} → "
                       f"{', '.join(new.recommendations) or 'none'}")
    if old.trend != new.trend and (old.trend or new.trend):
        reasons.append(f"trend {old.trend or 'none'} → {new.trend or 'none'}")
    return reasons


@dataclass
class _Counts:
    unchanged: int = 0
    first: int = 0
    unfinished: int = 0


def _earlier(analyses: list[Analysis], new: Analysis) -> Analysis | None:
    """The study's newest finished analysis made before ``new`` and outside its batch."""
    done = [a for a in analyses if a.id < new.id and a.status in TERMINAL_ANALYSIS
            and (a.batch_id is None or a.batch_id != new.batch_id)]
    return done[-1] if done else None


def _change(st: Study | None, study_uid: str, reasons: list[str], old: ChangeSide, new: ChangeSide,
            review: ReviewOut | None) -> ChangeOut:
    return ChangeOut(study_uid=study_uid, study_date=st.study_date if st else None,
                     accession_number=(st.accession_number or "") if st else "",
                     patient_ref=patient_ref(st.patient_id or "") if st else "",
                     patient_name=person_name(st.patient_name) if st else "",
                     patient_id=(st.patient_id or "") if st else "", reasons=reasons, old=old, new=new, review=review)


def batch_changes(registry: Registry, batch: BatchOut, data_root: Path) -> BatchChanges:
    mine = registry.analyses(batch_id=batch.id)
    uids = sorted({a.study_uid for a in mine})
    by_study: dict[str, list[Analysis]] = defaultdict(list)
    for a in registry.analyses_of_studies(uids):
        by_study[a.study_uid].append(a)
    reviews = registry.reviews([a.id for a in mine])
    counts, changes = _Counts(), []
    for new in mine:
        if new.status not in TERMINAL_ANALYSIS:
            counts.unfinished += 1
            continue
        old_a = _earlier(by_study[new.study_uid], new)
        if old_a is None:
            counts.first += 1
            continue
        old, cur = side(old_a, data_root), side(new, data_root)
        reasons = compare(old, cur)
        if not reasons:
            counts.unchanged += 1
            continue
        mark = reviews.get(new.id)
        changes.append(_change(registry.study(new.study_uid), new.study_uid, reasons, old, cur,
                               ReviewOut.model_validate(mark) if mark is not None else None))
    return BatchChanges(batch=batch, threshold_points=THRESHOLD_POINTS, changes=changes, unchanged=counts.unchanged,
                        first_analyses=counts.first, unfinished=counts.unfinished)


__all__ = ["THRESHOLD_POINTS", "batch_changes", "compare", "side"]
