"""``followup synth --scenario surveillance``: a baseline and K = 3-5 follow-ups of one patient.

Writes ``OUT/baseline/``, ``OUT/followup-1/ ... OUT/followup-K/`` (DICOM), ``OUT/procedure.json``
and ``OUT/truth.json``. The follow-ups are taken at about 1, 6, 12, 24 (and 36) months after the
procedure (Kawamoto et al., Breast Cancer 2024;31:695-704: MRI at 1, 6, 12, 24, 36 and 60
months), each with its own repositioning, deformation, timing and motion between phases. The case
(anatomy, tumour, acute ablation zone, record) is the ``complete`` scenario's draw for the seed
(:func:`followup.synth.cases.draw_case`); each time point is that case with the zone, rim and
findings of its month (:func:`dataclasses.replace`), rendered and written by the pair generator's
own functions (:mod:`followup.synth.generate`).

Involution (what the generator assumes; no breast-cancer figure exists): there is no published
curve of the ablation zone's volume after cryoablation of breast *cancer*. The only figures are
for benign fibroadenomas: 89 % median volume reduction by ultrasound at 12 months (Kaufman et al.
2004, 57 lesions), 91 % with tailored freezing (Kaufman, Breast 2004;13:397), 92.9 % (Filipov et
al., PLOS One 2026). They measure the treated lesion, not the zone with its 10 mm margin of
necrotic fat; for the fat-necrosis zone Kawamoto 2021 reports about 58 % shrinkage over 2 years
(indicative, not re-verified). The generator takes them as a direction (monotone shrinkage), not a
rate: the zone's volume relative to the first follow-up is ``p + (1 - p) exp(-(m - 1) / 5)`` (m in
months), with ``p`` set so that the 12-month reduction is a seed-drawn 35-70 % (an assumption
between Kawamoto's 58 % at 2 years and below the fibroadenoma figures, which the zone's margin
makes too steep; it also keeps the zone measurable at the synthetic resolution). The benign rim
fades (amplitude x exp(-(m - 1) / 8); absent once below 0.3 of its first value: an assumption;
after renal cryoablation enhancement can persist up to 6 months, PMID 27401340).

Recurrence: ICE3 (Fine et al., Ann Surg Oncol 2021; 2024) reports 2.06 % ipsilateral recurrence at
about 3 years and 4.3 % at 5 years. The synthetic series over-sample it (``RECURRENCE_SHARE`` of
series, for testing): at month 12 or 24 either a nodule appears at the zone's edge (4-10 mm,
tumour kinetics, its diameter growing 40-80 % a year after: an assumption) or the zone grows
(volume x 1.6-2.4 against the previous follow-up, with a medium-uptake rim again).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from followup.synth import kinetics
from followup.synth.case_model import Case, Ellipsoid, Nodule, PhaseMotion, Timing
from followup.synth.cases import draw_case
from followup.synth.dicom_writer import StudyMeta, UidSource
from followup.synth.generate import (
    SIZE_SPECS,
    SIZES,
    VENDORS,
    procedure_record,
    study_plans,
    write_study,
)
from followup.synth.motion import FollowupToBaseline
from followup.synth.phantom import Grid
from followup.synth.scenario import draw_followup_transform, draw_phase_motion, draw_timing
from followup.synth.zone_findings import radial_extent

SCENARIO = "surveillance"
DAYS_PER_MONTH = 30.4375
# Kawamoto 2024 schedule (1, 6, 12, 24, 36 months); K = 3-5 follow-ups take its first K.
SCHEDULE_MONTHS = (1, 6, 12, 24, 36)
N_FOLLOWUPS = (3, 5)
# Involution (see the module docstring): 12-month volume reduction drawn in this range (assumption;
# fibroadenoma: 89-93 % at 12 months, Kaufman 2004 / Filipov 2026; fat-necrosis zone ~58 % over
# 2 years, Kawamoto 2021, indicative), time constant of the exponential in months (assumption).
REDUCTION_12M = (0.35, 0.70)
INVOLUTION_TAU_MONTHS = 5.0
REFERENCE_REDUCTION_12M = {"value": 0.89, "range": [0.89, 0.929],
                           "source": "Kaufman et al. 2004 (fibroadenoma, 57 lesions, ultrasound): 89 % "
                                     "median volume reduction at 12 months; Kaufman, Breast 2004: 91 %; "
                                     "Filipov et al., PLOS One 2026: 92.9 %",
                           "breast_cancer_figure": None,
                           "note": "no published involution figure exists for the ablation zone of "
                                   "breast cancer; the generator's reduction is an assumption"}
RIM_FADE_MONTHS = 8.0  # assumption (renal cryoablation: enhancement up to 6 months, PMID 27401340)
RIM_PRESENT_FRACTION = 0.3  # assumption: below this share of its first amplitude the rim is gone
# Fat necrosis keeps a ring: ring enhancement in 15/25 fat-necrosis lesions (Eur J Radiol 2011,
# PMID 21742453): in that share of series the rim fades only to RIM_PERSISTENT_FLOOR (assumption).
RIM_PERSISTS_SHARE = 15 / 25
RIM_PERSISTENT_FLOOR = 0.6
# Recurrence (ICE3: 2.06 % at ~3 years, 4.3 % at 5 years); over-sampled here for testing.
RECURRENCE_SHARE = 0.4
RECURRENCE_MONTHS = (12, 24)
NODULE_SHARE = 0.7  # of recurrences: a nodule; the others: the zone grows
NODULE_FIRST_MM = (4.0, 10.0)
NODULE_GROWTH_PER_YEAR = (0.4, 0.8)  # diameter, assumption
ZONE_GROWTH = (1.6, 2.4)  # volume against the previous follow-up, assumption
GROWING_RIM = kinetics.Curve(1.6, 90.0)  # medium uptake, persistent (as the early hyperaemic rim)


@dataclass(frozen=True)
class TimePoint:
    """One follow-up of the series: its month, date and what it shows (body frame)."""

    label: str  # followup-1 ...
    month: int  # scheduled month
    date: dt.date
    zone: Ellipsoid
    rim_thickness_mm: float  # 0: no rim
    rim_curve: kinetics.Curve
    nodules: tuple[Nodule, ...]
    recurrence: str | None  # None | "nodule" | "zone-growth"
    recurrence_size_mm: float  # nodule diameter, or growth of the zone's equivalent diameter
    transform: FollowupToBaseline
    timing: Timing
    phase_motion: tuple[PhaseMotion, ...]
    layout: str

    @property
    def rim_present(self) -> bool:
        return self.rim_thickness_mm > 0


@dataclass(frozen=True)
class Series:
    """A surveillance series: the base case (baseline, record) and its follow-ups."""

    case: Case
    seed: int
    reduction_12m: float
    plateau: float
    recurrence_month: int | None
    recurrence_kind: str | None
    time_points: tuple[TimePoint, ...]


def involution_fraction(month: float, plateau: float) -> float:
    """Zone volume relative to the first follow-up's (month 1): ``p + (1 - p) exp(-(m - 1) / tau)``."""
    return float(plateau + (1.0 - plateau) * np.exp(-max(month - 1.0, 0.0) / INVOLUTION_TAU_MONTHS))


def plateau_for(reduction_12m: float) -> float:
    """The plateau ``p`` that gives ``reduction_12m`` at month 12."""
    e = float(np.exp(-11.0 / INVOLUTION_TAU_MONTHS))
    return (1.0 - reduction_12m - e) / (1.0 - e)


def rim_fraction(month: float, floor: float) -> float:
    """The rim's amplitude relative to the first follow-up's: it fades towards ``floor``."""
    return float(floor + (1.0 - floor) * np.exp(-max(month - 1.0, 0.0) / RIM_FADE_MONTHS))


def _scaled(zone: Ellipsoid, volume_factor: float) -> Ellipsoid:
    return Ellipsoid(zone.centre, zone.radii * volume_factor ** (1.0 / 3.0), zone.rotation)


def _volume_ml(e: Ellipsoid) -> float:
    return float(4.0 / 3.0 * np.pi * np.prod(e.radii) / 1000.0)


def _eq_diameter_mm(e: Ellipsoid) -> float:
    return float(2.0 * np.prod(e.radii) ** (1.0 / 3.0))


def _nodule_at(zone: Ellipsoid, direction: np.ndarray, offset: float, dia: float, kind: str) -> Nodule:
    """A nodule straddling the zone's edge along ``direction`` (``offset`` x its diameter out)."""
    centre = zone.centre + direction * (radial_extent(zone, direction) + offset * dia)
    return Nodule(centre, float(dia), kind)


def _date(case: Case, month: int, rng: np.random.Generator) -> dt.date:
    days = int(round(month * DAYS_PER_MONTH)) + int(rng.integers(-10, 15))
    return case.procedure_date + dt.timedelta(days=max(days, 24))  # the first one >= 3 weeks


def draw_series(seed: int, n_post: int, vendor: str | None = None) -> Series:
    """The series of a seed (pure: no rendering). ``vendor`` None: each follow-up's layout is
    drawn (per-phase, single-series or sagittal); the baseline is per-phase."""
    case = draw_case("complete", seed, n_post)
    rng = np.random.default_rng([seed, 14, 2024])
    k = int(rng.integers(N_FOLLOWUPS[0], N_FOLLOWUPS[1] + 1))
    months = SCHEDULE_MONTHS[:k]
    reduction = float(rng.uniform(*REDUCTION_12M))
    plateau = plateau_for(reduction)
    recur_month, recur_kind = None, None
    if rng.random() < RECURRENCE_SHARE:
        recur_month = int(rng.choice([m for m in RECURRENCE_MONTHS if m in months]))
        recur_kind = "nodule" if rng.random() < NODULE_SHARE else "zone-growth"
    direction = rng.normal(size=3)
    direction[1] = -abs(direction[1]) * 0.5  # at the zone's depth or in front of it
    direction /= np.linalg.norm(direction)
    nod_first = float(rng.uniform(*NODULE_FIRST_MM))
    nod_growth = float(rng.uniform(*NODULE_GROWTH_PER_YEAR))
    nod_kind = "washout" if rng.random() < 0.6 else "plateau"
    nod_offset = float(rng.uniform(-0.2, 0.3))
    zone_growth = float(rng.uniform(*ZONE_GROWTH))
    rim_floor = RIM_PERSISTENT_FLOOR if rng.random() < RIM_PERSISTS_SHARE else 0.0
    points: list[TimePoint] = []
    volume_factor = 1.0
    for n, month in enumerate(months, start=1):
        recurred = recur_month is not None and month >= recur_month
        previous = volume_factor
        if recurred and recur_kind == "zone-growth":
            volume_factor = previous * zone_growth
        else:
            volume_factor = involution_fraction(month, plateau)
        zone = _scaled(case.zone, volume_factor)
        fade = rim_fraction(month, rim_floor)
        rim_t = case.rim_thickness_mm if fade >= RIM_PRESENT_FRACTION else 0.0
        rim_c = kinetics.Curve(case.rim_curve.amplitude * fade, case.rim_curve.tau_s)
        nodules: tuple[Nodule, ...] = ()
        size = 0.0
        if recurred and recur_kind == "nodule" and recur_month is not None:
            dia = nod_first * (1.0 + nod_growth * (month - recur_month) / 12.0)
            nodules = (_nodule_at(zone, direction, nod_offset, dia, nod_kind),)
            size = dia
        elif recurred and recur_kind == "zone-growth":
            rim_t, rim_c = float(rng.uniform(2.5, 3.5)), GROWING_RIM
            size = _eq_diameter_mm(zone) - _eq_diameter_mm(_scaled(case.zone, previous))
        layout = vendor or str(rng.choice(VENDORS, p=[0.5, 0.3, 0.2]))
        points.append(TimePoint(
            f"followup-{n}", month, _date(case, month, rng), zone, float(rim_t), rim_c, nodules,
            recur_kind if recurred else None, float(size), draw_followup_transform(rng),
            draw_timing(rng, n_post), draw_phase_motion(rng, n_post, bool(rng.random() < 0.5)), layout))
    return Series(case, seed, reduction, plateau, recur_month, recur_kind, tuple(points))


def case_at(series: Series, tp: TimePoint) -> Case:
    """The base case as it looks at one follow-up (what the phantom renders)."""
    return replace(series.case, zone=tp.zone, rim_thickness_mm=tp.rim_thickness_mm,
                   rim_curve=tp.rim_curve, rim_kind="thin", nodules=tp.nodules, transform=tp.transform,
                   followup_timing=tp.timing, followup_phase_motion=tp.phase_motion,
                   followup_date=tp.date)


def generate_surveillance(out_dir: Path | str, seed: int, vendor: str | None = None,
                          size: str = "small") -> dict:
    """Write the baseline, every follow-up, procedure.json and truth.json; return the truth."""
    if vendor is not None and vendor not in VENDORS:
        raise ValueError(f"unknown vendor layout {vendor!r}; choose from {', '.join(VENDORS)}")
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; choose from {', '.join(SIZES)}")
    out = Path(out_dir)
    series = draw_series(seed, SIZE_SPECS[size].n_post, vendor)
    case = series.case
    rng = np.random.default_rng([seed, 14, 7, SIZES.index(size)])
    uids = UidSource("followup-synth", SCENARIO, seed, vendor or "drawn", size)
    patient_id = f"SYN{seed:05d}SUR"
    name = f"SYNTHETIC^SURVEILLANCE^{seed}"
    studies: dict[str, dict] = {}
    for label, study_case, kind, layout, date in (
            ("baseline", case, "baseline", vendor or "per-phase", case.baseline_date),
            *((tp.label, case_at(series, tp), "followup", tp.layout, tp.date) for tp in series.time_points)):
        start = dt.datetime.combine(date, dt.time(9, 30)) + dt.timedelta(minutes=int(rng.integers(0, 300)))
        meta = StudyMeta(patient_id, name, "19580312", uids(), uids(), start,
                         f"ACC{seed:04d}{label[0].upper()}{label[-1]}", str(len(studies) + 1),
                         case.laterality)
        plans, grid = study_plans(study_case, kind, layout, size, start, rng)
        records = write_study(out / label, meta, plans, uids)
        studies[label] = _study_json(meta, date, records, grid, layout)
    (out / "procedure.json").write_text(json.dumps(procedure_record(case, patient_id), indent=2) + "\n")
    truth = _truth(series, size, studies)
    (out / "truth.json").write_text(json.dumps(truth, indent=2) + "\n")
    return truth


def _study_json(meta: StudyMeta, date: dt.date, records: list[dict], grid: Grid, layout: str) -> dict:
    return {"study_uid": meta.study_uid, "frame_of_reference_uid": meta.frame_of_reference_uid,
            "study_date": date.isoformat(), "layout": layout, "series": records,
            "dce_shape": list(grid.shape), "dce_affine_lps": np.round(grid.affine, 6).tolist()}


def _r(a, nd: int = 3) -> list:
    return np.round(np.asarray(a, dtype=float), nd).tolist()


def _time_point_truth(series: Series, tp: TimePoint, study: dict) -> dict:
    to_fu = lambda p: tp.transform.invert_points(p)[0]  # noqa: E731
    case = series.case
    t_early, t_late = tp.timing.post_times_s[0], tp.timing.post_times_s[-1]
    return {
        "label": tp.label, "month": tp.month, "study_date": tp.date.isoformat(),
        "days_since_procedure": (tp.date - case.procedure_date).days,
        "study_uid": study["study_uid"], "layout": tp.layout,
        "ablation_zone": {
            "centre_followup_lps_mm": _r(to_fu(tp.zone.centre)),
            "centre_baseline_lps_mm": _r(tp.zone.centre),
            "radii_mm": _r(tp.zone.radii), "volume_ml": round(_volume_ml(tp.zone), 3),
            "equivalent_diameter_mm": round(_eq_diameter_mm(tp.zone), 2),
        },
        "rim": {"present": tp.rim_present, "thickness_mm": round(tp.rim_thickness_mm, 2),
                "amplitude": round(tp.rim_curve.amplitude, 3),
                "curve_type": kinetics.curve_type(tp.rim_curve, t_early, t_late) if tp.rim_present else None},
        "recurrence": tp.recurrence is not None,
        "recurrence_kind": tp.recurrence,
        "recurrence_size_mm": round(tp.recurrence_size_mm, 2) if tp.recurrence else None,
        "nodules": [{"centre_followup_lps_mm": _r(to_fu(n.centre)), "centre_baseline_lps_mm": _r(n.centre),
                     "diameter_mm": round(n.diameter_mm, 2), "kinetics": n.kinetics,
                     "curve_type": kinetics.curve_type(n.enhancement, t_early, t_late)} for n in tp.nodules],
        "tumour_centre_followup_lps_mm": _r(to_fu(case.tumour.centre)),
        "followup_to_baseline_rigid": _r(tp.transform.rigid_matrix, 6),
        "nonrigid_bound_mm": round(tp.transform.displacement.bound_mm, 3),
        "phase_times_after_injection_s": [round(t, 2) for t in tp.timing.all_times_s],
    }


def _truth(series: Series, size: str, studies: dict[str, dict]) -> dict:
    case = series.case
    return {
        "scenario": SCENARIO, "seed": series.seed, "size": size, "laterality": case.laterality,
        "procedure_date": case.procedure_date.isoformat(),
        "baseline": {"study_date": case.baseline_date.isoformat(),
                     "study_uid": studies["baseline"]["study_uid"],
                     "tumour_centre_lps_mm": _r(case.tumour.centre),
                     "tumour_diameter_mm": round(case.tumour_diameter_mm, 2)},
        "involution": {
            "model": "zone volume / first follow-up's = p + (1 - p) exp(-(months - 1) / tau)",
            "tau_months": INVOLUTION_TAU_MONTHS, "plateau_p": round(series.plateau, 4),
            "reduction_12_months": round(series.reduction_12m, 4),
            "reduction_12_months_range": list(REDUCTION_12M),
            "reference": REFERENCE_REDUCTION_12M,
            "rim": f"amplitude x exp(-(months - 1) / {RIM_FADE_MONTHS:g}); absent below "
                   f"{RIM_PRESENT_FRACTION:g} (assumption)",
        },
        "recurrence": {"month": series.recurrence_month, "kind": series.recurrence_kind,
                       "share_of_series": RECURRENCE_SHARE,
                       "note": "over-sampled for testing; ICE3: 2.06 % at ~3 years, 4.3 % at 5 years"},
        "time_points": [_time_point_truth(series, tp, studies[tp.label]) for tp in series.time_points],
        "studies": studies,
    }


__all__ = ["SCENARIO", "Series", "TimePoint", "case_at", "draw_series", "generate_surveillance",
           "involution_fraction", "plateau_for"]
