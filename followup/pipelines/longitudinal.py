"""Longitudinal surveillance: every follow-up of a patient compared with the one before it.

Pure: numbers, points and 4 x 4 affines in; the per-time-point summary, the change against the
previous follow-up and the trend out (no images, no I/O). The image work (each earlier follow-up
assessed against the baseline and registered to the current one) is in
:mod:`followup.pipelines.surveillance`.

What a reader of the 12-month MRI does (clinical-evidence.md, "Surveillance after cryoablation"):
the ablation zone should shrink (fat necrosis involutes) and its thin benign rim fade; a zone that
grows, a rim that thickens, or new or growing nodular enhancement at the zone against the
previous exam means recurrence. No published figure says how much growth is significant for an
ablation zone in the breast: every threshold below is an assumption, said so where it is used
(the only involution figures are for fibroadenoma cryoablation, 89-93 % median volume reduction at
12 months, Kaufman 2004 / Filipov 2026: a direction, monotone shrinkage, not a threshold).

The trend, in order of precedence:

* ``new-enhancement``: a suspicious focus at the ablation site that the previous follow-up did not
  show within ``FOCUS_MATCH_MM`` (mapped through the registration of the two follow-ups), or one
  that grew by >= ``GROWN_MIN_FRACTION`` and >= ``GROWN_MIN_MM`` in largest diameter; where the
  previous follow-up could not be registered, against the latest earlier one that could;
* ``growing``: the zone's volume grew by >= ``GROWING_VOLUME_RATIO`` against the previous
  follow-up (a volume that is mostly an earlier zone's bound, ``VOLUME_BOUND_SHARE``, is an upper
  bound and never shows growth), or the rim thickened by >= ``RIM_THICKENING_MM``;
* ``involuting``: the zone's volume fell to <= ``INVOLUTING_VOLUME_RATIO`` of the previous one;
* ``stable``: otherwise.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from followup.evidence import LR_INVOLUTING, OddsFactor

# Zone volume against the previous follow-up (assumptions: no published criterion for an ablation
# zone; 1.3 lies above the spread of our zone volumes between exams of an involuting phantom, and
# below RECIST 1.1's 20 % diameter increase for progression, which is x 1.73 in volume).
GROWING_VOLUME_RATIO = 1.3
INVOLUTING_VOLUME_RATIO = 0.9
# A zone whose edge is an earlier exam's bound (zone_prior: no rim or signal step showed it, up to
# the bound or beyond) in at least this share of directions has a volume that is an upper bound,
# not a measurement: it says the zone is no larger, never that it grew (where a rim was seen beyond
# the bound the zone may have grown that far: those directions do not count, so a zone that grew
# with its rim, our generator's series 95001 at 24 months, still reads as grown). Independent
# series 99600: a bound whose orientation was unknown, the earlier zone's longest radius, let a zone
# measured at 5.7 x its true volume read as 1.9 x the one before. A modelling choice.
VOLUME_BOUND_SHARE = 0.5
# Rim thickening that counts as growth (assumption: twice the benign rim's 1-2.5 mm spread).
RIM_THICKENING_MM = 2.0
# Two findings of consecutive exams are the same when their centres, mapped into one space, lie
# within this distance (assumption: several times the registration error of a good registration,
# < 2 mm on our tuning seeds, docs/analysis/index.md, "Registration").
FOCUS_MATCH_MM = 10.0
# A focus has grown when its largest diameter rose by >= 20 % (RECIST 1.1's progression rule) and
# by >= 2 mm (assumption: about one voxel of a clinical dynamic series; smaller is noise).
GROWN_MIN_FRACTION = 0.2
GROWN_MIN_MM = 2.0
# A focus "at the ablation site" (as in probability.SITE_BAND_MM).
SITE_BAND_MM = 10.0
# Where registrations of the chain current -> prior -> baseline and current -> baseline disagree
# by more than this at the treated site, the chain is inconsistent (docs/analysis/index.md, "Registration": on the
# tuning seeds converged registrations erred < 2 mm, failed ones > 5 mm).
CHAIN_TOLERANCE_MM = 5.0
DAYS_PER_MONTH = 30.4375

# Likelihood ratios of a change against the previous follow-up. No published figure exists for
# MRI surveillance after breast cryoablation: both are assumptions (BI-RADS and
# clinical-evidence.md: new or growing enhancement, or a growing zone, is suspicious for
# recurrence). They multiply the odds on top of the current study's own MRI likelihood ratio
# (which already counts a suspicious focus); the change is taken as further, partly independent
# evidence: the wide ranges carry that uncertainty into the interval.
LR_NEW_ENHANCEMENT = OddsFactor(
    3.0, 1.5, 6.0, "Assumption (no published figure): new or grown nodular enhancement against the "
    "previous follow-up MRI; BI-RADS: new or enlarging enhancement is suspicious", True)
LR_ZONE_GROWING = OddsFactor(
    2.0, 1.2, 4.0, "Assumption (no published figure): ablation zone or rim growing against the "
    "previous follow-up MRI, where involution is expected (fibroadenoma cryoablation: 89-93% "
    "volume reduction at 12 months, Kaufman 2004)", True)

TRENDS = ("involuting", "stable", "growing", "new-enhancement")
RAISING = ("growing", "new-enhancement")


@dataclass(frozen=True)
class FocusMeasure:
    """A focus of one time point, its centre mapped into the current follow-up's LPS space."""

    centre_lps: np.ndarray | None  # None: no reliable mapping into the current follow-up
    largest_diameter_mm: float
    curve_type: str
    distance_to_zone_edge_mm: float
    peak_enhancement_pct: float
    suspicious: bool

    @property
    def at_site(self) -> bool:
        return self.distance_to_zone_edge_mm <= SITE_BAND_MM


@dataclass(frozen=True)
class TimePointMeasure:
    """What one follow-up showed (``status`` not complete: nothing measured)."""

    study_uid: str
    date: dt.date | None
    days_since_procedure: int | None
    status: str  # complete | deferred | failed
    current: bool = False
    zone_volume_ml: float | None = None
    zone_axes_mm: tuple[float, ...] = ()
    rim_thickness_mm: float | None = None
    rim_curve_type: str | None = None
    rim_initial_enhancement_pct: float | None = None
    rim_delayed_change_pct: float | None = None
    foci: tuple[FocusMeasure, ...] = ()  # every focus (suspicious ones and other enhancement)
    mapping: str = "self"  # how its points reach the current follow-up: self | direct | via-baseline | none
    registration_quality: str | None = None  # of its registration to the current follow-up
    chain_discrepancy_mm: float | None = None
    reason: str | None = None  # why nothing was measured
    # share of directions whose zone edge is an earlier exam's bound (no rim or step showed it)
    zone_edge_from_prior_share: float = 0.0

    @property
    def measured(self) -> bool:
        return self.status == "complete" and self.zone_volume_ml is not None

    @property
    def suspicious_site_foci(self) -> tuple[FocusMeasure, ...]:
        return tuple(f for f in self.foci if f.suspicious and f.at_site)

    @property
    def months_since_procedure(self) -> float | None:
        return None if self.days_since_procedure is None else self.days_since_procedure / DAYS_PER_MONTH


@dataclass(frozen=True)
class FocusChange:
    centre_lps: np.ndarray | None
    largest_diameter_mm: float
    previous_diameter_mm: float | None  # None: new
    curve_type: str

    @property
    def change_mm(self) -> float | None:
        return None if self.previous_diameter_mm is None else self.largest_diameter_mm - self.previous_diameter_mm


@dataclass(frozen=True)
class Change:
    """A time point against the previous measured follow-up."""

    previous_study_uid: str
    previous_date: dt.date | None
    volume_ratio: float | None
    rim_thickness_change_mm: float | None
    new_foci: tuple[FocusChange, ...]
    grown_foci: tuple[FocusChange, ...]
    foci_compared: bool  # False: no earlier follow-up could be put in one space with it (no focus called new)
    # The follow-up the foci were compared with: the previous one, or, where that one could not be
    # registered, the latest earlier one that could (None: not compared).
    foci_previous_study_uid: str | None = None
    foci_previous_date: dt.date | None = None
    volume_bounded: bool = False  # the current volume is an earlier exam's bound (VOLUME_BOUND_SHARE)

    @property
    def foci_against_earlier(self) -> bool:
        """The foci were compared with an earlier follow-up than the previous one."""
        return self.foci_previous_study_uid not in (None, self.previous_study_uid)


@dataclass(frozen=True)
class Longitudinal:
    points: tuple[TimePointMeasure, ...]  # by date, the current one last
    changes: tuple[Change | None, ...]  # one per point: against the previous measured one
    trend: str | None  # None: nothing to compare with
    reason: str

    @property
    def current_change(self) -> Change | None:
        return self.changes[-1] if self.changes else None

    @property
    def raises_probability(self) -> bool:
        return self.trend in RAISING


def map_points(matrix: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Apply a 4 x 4 affine to points (n x 3 or 3)."""
    p = np.atleast_2d(np.asarray(pts, dtype=float))
    return p @ np.asarray(matrix)[:3, :3].T + np.asarray(matrix)[:3, 3]


def chain_discrepancy_mm(current_to_baseline: np.ndarray, current_to_prior: np.ndarray,
                         prior_to_baseline: np.ndarray, point_current: np.ndarray) -> float:
    """How far the chain current -> prior -> baseline lands from current -> baseline at a point."""
    direct = map_points(current_to_baseline, point_current)
    chained = map_points(prior_to_baseline @ current_to_prior, point_current)
    return float(np.linalg.norm(direct - chained))


def _match(focus: FocusMeasure, previous: Sequence[FocusMeasure]) -> FocusMeasure | None:
    """The previous focus nearest to ``focus`` within ``FOCUS_MATCH_MM`` (or its own size)."""
    if focus.centre_lps is None:
        return None
    best, best_d = None, np.inf
    for p in previous:
        if p.centre_lps is None:
            continue
        d = float(np.linalg.norm(np.asarray(p.centre_lps) - np.asarray(focus.centre_lps)))
        if d <= max(FOCUS_MATCH_MM, 0.5 * (focus.largest_diameter_mm + p.largest_diameter_mm)) and d < best_d:
            best, best_d = p, d
    return best


def compare(previous: TimePointMeasure, current: TimePointMeasure) -> Change:
    """``current`` against ``previous`` (both measured)."""
    ratio = None
    if previous.zone_volume_ml and current.zone_volume_ml is not None:
        ratio = current.zone_volume_ml / previous.zone_volume_ml
    rim = None
    if previous.rim_thickness_mm is not None and current.rim_thickness_mm is not None:
        rim = current.rim_thickness_mm - previous.rim_thickness_mm
    comparable = previous.mapping != "none" and current.mapping != "none"
    new, grown = [], []
    if comparable:
        for f in current.suspicious_site_foci:
            m = _match(f, previous.foci)
            if m is None:
                new.append(FocusChange(f.centre_lps, f.largest_diameter_mm, None, f.curve_type))
            elif f.largest_diameter_mm >= m.largest_diameter_mm * (1 + GROWN_MIN_FRACTION) and \
                    f.largest_diameter_mm - m.largest_diameter_mm >= GROWN_MIN_MM:
                grown.append(FocusChange(f.centre_lps, f.largest_diameter_mm, m.largest_diameter_mm,
                                         f.curve_type))
    return Change(previous.study_uid, previous.date, ratio, rim, tuple(new), tuple(grown), comparable,
                  previous.study_uid if comparable else None, previous.date if comparable else None,
                  current.zone_edge_from_prior_share >= VOLUME_BOUND_SHARE)


def with_foci_against(change: Change, earlier: TimePointMeasure, current: TimePointMeasure) -> Change:
    """``change`` (against the previous follow-up, which could not be registered to ``current``)
    with its foci compared with ``earlier`` instead: a reader compares with the latest prior that
    can be compared, and a nodule new since then is new (a registered exam before the one that
    could not be registered; its volume and rim stay against the previous one)."""
    against = compare(earlier, current)
    return replace(change, new_foci=against.new_foci, grown_foci=against.grown_foci, foci_compared=True,
                   foci_previous_study_uid=earlier.study_uid, foci_previous_date=earlier.date)


def classify(change: Change | None) -> tuple[str | None, str]:
    """The trend of one change and the sentence that says why."""
    if change is None:
        return None, "no earlier follow-up was measured: nothing to compare with"
    when = change.previous_date.isoformat() if change.previous_date else "the previous follow-up"
    if change.new_foci or change.grown_foci:
        parts = [f"new {f.curve_type} focus of {f.largest_diameter_mm:.0f} mm" for f in change.new_foci]
        parts += [f"{f.curve_type} focus grown from {f.previous_diameter_mm:.0f} to "
                  f"{f.largest_diameter_mm:.0f} mm" for f in change.grown_foci]
        against = when
        if change.foci_against_earlier:
            against = (f"{change.foci_previous_date.isoformat() if change.foci_previous_date else 'an earlier one'}"
                       f" (that of {when} could not be registered)")
        return "new-enhancement", f"against the follow-up of {against}: " + "; ".join(parts) + " at the ablation site"
    r = change.volume_ratio
    if r is not None and r >= GROWING_VOLUME_RATIO and not change.volume_bounded:
        return "growing", (f"the ablation zone grew to {r:.2f} x its volume of {when} "
                           f"(>= {GROWING_VOLUME_RATIO:g}; involution is expected)")
    if change.rim_thickness_change_mm is not None and change.rim_thickness_change_mm >= RIM_THICKENING_MM:
        return "growing", (f"the rim thickened by {change.rim_thickness_change_mm:.1f} mm against {when} "
                           f"(>= {RIM_THICKENING_MM:g} mm)")
    tail = "" if change.foci_compared else " (foci not compared: the two studies could not be registered)"
    if r is not None and r <= INVOLUTING_VOLUME_RATIO:
        return "involuting", f"the ablation zone shrank to {r:.2f} x its volume of {when}, no new enhancement{tail}"
    shown = "unknown" if r is None else f"{r:.2f} x"
    if change.volume_bounded:
        shown += (" (an upper bound: in most directions no rim or signal change showed the zone's edge, "
                  "which an earlier zone bounds)")
    return "stable", f"the ablation zone's volume is {shown} that of {when}, no new enhancement{tail}"


def summarise(points: Sequence[TimePointMeasure]) -> Longitudinal:
    """Every time point (by date, the current one last) with its change against the previous
    measured one, and the current trend."""
    ordered = sorted(points, key=lambda p: (p.current, p.date or dt.date.min))
    changes: list[Change | None] = []
    last: TimePointMeasure | None = None
    for i, p in enumerate(ordered):
        change = compare(last, p) if (last is not None and p.measured) else None
        if change is not None and not change.foci_compared:
            # (the previous one is not among them: it is the one that could not be registered)
            registered = [q for q in ordered[:i] if q.measured and q.mapping != "none"]
            if registered and p.mapping != "none":
                change = with_foci_against(change, registered[-1], p)
        changes.append(change)
        if p.measured:
            last = p
    trend, reason = classify(changes[-1] if changes else None)
    return Longitudinal(tuple(ordered), tuple(changes), trend, reason)


def likelihood_factor(lon: Longitudinal) -> tuple[str, OddsFactor] | None:
    """The odds factor of the current trend (named for the drivers); None when stable or nothing to
    compare. Involution lowers the odds a little (``evidence.LR_INVOLUTING``, an assumption)."""
    if lon.trend == "new-enhancement":
        return f"surveillance: {lon.reason}", LR_NEW_ENHANCEMENT
    if lon.trend == "growing":
        return f"surveillance: {lon.reason}", LR_ZONE_GROWING
    if lon.trend == "involuting":
        return f"surveillance: {lon.reason}", LR_INVOLUTING
    return None


__all__ = [
    "CHAIN_TOLERANCE_MM",
    "LR_NEW_ENHANCEMENT",
    "LR_ZONE_GROWING",
    "RAISING",
    "TRENDS",
    "VOLUME_BOUND_SHARE",
    "Change",
    "FocusChange",
    "FocusMeasure",
    "Longitudinal",
    "TimePointMeasure",
    "chain_discrepancy_mm",
    "classify",
    "compare",
    "likelihood_factor",
    "map_points",
    "summarise",
    "with_foci_against",
]
