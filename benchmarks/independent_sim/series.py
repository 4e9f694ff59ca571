"""A surveillance series: one patient's baseline and follow-ups at about 1, 6, 12, 24 (and, in half
of the series, 36) months after cryoablation, each exam its own study (own protocol, layout,
repositioning), with the truth per exam.

Models (assumptions where no breast figure exists, ``shared/clinical-evidence.md``):

* schedule: Kawamoto 2024 (baseline, 1, 6, 12, 24, 36 months), each exam +-7 days (1 month: 21-35
  days, after the 3-week rule of the deck);
* involution: the zone (drawn at the procedure as for a single case, tumour + 2 x 10 mm margin +
  0-6 mm overshoot, 22-50 mm) shrinks monotonically, its diameter times
  ``1 - a (1 - exp(-(days - 21) / tau))``, a 0.15-0.4, tau 200-500 days: about 30-75 % of its
  volume lost by two years (direction only: Kawamoto 2021 about 58 % over two years; fibroadenoma
  cryoablation 89-93 % of the lesion at 12 months, Kaufman 2004, Filipov 2026);
* the rim fades: its enhancement times ``g = exp(-(days - 21) / tau_rim)``, its thickness times
  ``0.4 + 0.6 g``; tau_rim 120-360 days in 75 % of patients (mostly gone by 12-24 months), 20-60
  days in 15 % (gone by 6 months), no enhancing rim at all in 10 %. The rim is *absent* (not drawn)
  once its initial enhancement would fall under 8 %. (Renal cryoablation: enhancement up to 6
  months, PMID 27401340; no breast curve published.)
* the zone's content drifts towards fat (fat necrosis liquefying into oil), half-way in ~400 days;
  once the rim has faded, 70 % of patients keep a thin (0.8-2 mm) non-enhancing fibrous wall around
  it (low signal on T1 with and without fat suppression: the capsule of an oil cyst, the classic
  look of fat necrosis; share and thickness are assumptions), the others none;
* recurrence in 35 % of series (a benchmark stress share: ICE3 measured 2.06 % at ~3 years): a
  nodule at the zone's edge (outside, against it) that first shows at the 12- or 24-month exam at
  4-10 mm and grows (volume doubling 90-300 days), fast with plateau or washout.

Layout: ``out/baseline``, ``out/m01``, ``out/m06``, ... (``followup analyze --baseline out/baseline
--followup out/m06 --procedure out/procedure.json`` reads any exam as it reads a single case),
``out/procedure.json``, ``out/truth.json``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path

import numpy as np

from .anatomy import make_breast
from .case import (
    MARGIN_MM,
    SHAPES,
    draw_foci,
    draw_tumour,
    edge_direction,
    lps,
    procedure_record,
    zone_volume_ml,
)
from .lesions import Blob, make_zone, scale_to_diameter, unit
from .nipple import location, make_nipple
from .studies import Lesion, Patient, Site, draw_repositioning, render_study

FIRST_SERIES_BENCHMARK_SEED = 99600  # series benchmarks only (own seed salt: not the cases' patients)
RECURRENCE_SHARE = 0.35
RIM_FATES = (("slow", 0.75), ("fast", 0.15), ("none", 0.10))
RIM_VISIBLE_PCT = 8.0
CAPSULE_SHARE = 0.7  # patients whose faded zone keeps a visible fibrous wall (assumption)


@dataclasses.dataclass
class Recurrence:
    first_month: int
    first_size: float  # largest diameter at its first exam, mm
    vdt: float  # volume doubling time, days
    direction: np.ndarray
    shape: str
    initial: float
    late: float
    first_days: int = 0
    size_last: float = 0.0
    blob: Blob | None = None

    def size(self, days: int) -> float:
        return self.first_size * 2 ** ((days - self.first_days) / (3 * self.vdt))


def scaled_blob(blob: Blob, k: float) -> Blob:
    """The same shape ``k`` times larger about its centre."""
    return dataclasses.replace(blob, semi_axes=blob.semi_axes * k, lobes=[(o * k, r * k) for o, r in blob.lobes])


def _exam_days(rng: np.random.Generator, month: int) -> int:
    if month == 1:
        return int(rng.integers(21, 36))
    return int(round(month * 30.44)) + int(rng.integers(-7, 8))


def generate_series(out: Path | str, seed: int, small: bool = False, months: tuple[int, ...] | None = None) -> dict:
    """Write ``out/baseline``, one folder per follow-up (``m01``, ``m06``, ...), ``out/procedure.json``
    and ``out/truth.json``; returns the truth (plus ``_exams``: each exam's site, repositioning and
    noise-free phases with their grid, not written). ``months``: the follow-ups (default 1, 6, 12, 24
    and, drawn, 36). ``small``: coarse volumes, 2 post phases (tests)."""
    out = Path(out)
    root = np.random.SeedSequence([seed, 0x5E41E5])
    r_case, r_anat, r_les, r_base, r_new, r_exams = (np.random.default_rng(s) for s in root.spawn(6))
    if months is None:
        months = (1, 6, 12, 24, 36) if r_case.random() < 0.5 else (1, 6, 12, 24)
    laterality = str(r_case.choice(["L", "R"]))
    breast = make_breast(r_anat, laterality, 2.5 if small else 1.5)
    nipple = make_nipple(r_new, breast)

    # --- tumour, zone at the procedure, its fate
    diameter = float(6 + 14 * r_les.beta(1.6, 2.6))
    zone_d0 = float(np.clip(diameter + 2 * MARGIN_MM + r_les.uniform(0, 6), 22, 50))
    tumour = draw_tumour(r_les, breast, diameter, zone_d0)
    t_centroid = np.asarray(tumour.measure["centroid"])
    thick = bool(r_les.random() < 0.25)
    rim0 = float(r_les.uniform(3.0, 6.0) if thick else r_les.uniform(1.0, 3.0))
    probe = unit(np.array([r_les.normal(), r_les.normal() * 0.3, r_les.normal()]))
    zone_centre = t_centroid + np.clip(r_les.normal(0, 1.5, 3), -3, 3)
    zone0 = make_zone(r_les, zone_centre, zone_d0, rim0, probe)
    rim_init0 = float(r_les.uniform(30, 80) if thick else r_les.uniform(20, 60))
    rim_late = float(r_les.uniform(10, 35))
    fate = str(r_les.choice([f for f, _ in RIM_FATES], p=[s for _, s in RIM_FATES]))
    tau_rim = float(r_les.uniform(120, 360) if fate == "slow" else r_les.uniform(20, 60))
    shrink, tau_zone = float(r_les.uniform(0.15, 0.4)), float(r_les.uniform(200, 500))
    fat_share0 = float(r_les.uniform(0.1, 0.7))
    rim_t1_factor = float(r_les.uniform(0.85, 1.15))
    haemorrhagic = bool(r_les.random() < 0.4)
    foci = draw_foci(r_les, breast, zone_centre, zone_d0)
    capsule = float(r_new.uniform(0.8, 2.0)) if r_new.random() < CAPSULE_SHARE else None

    def involution(days: int) -> float:
        return float(1 - shrink * (1 - np.exp(-max(days - 21, 0) / tau_zone)))

    # --- recurrence
    recur = None
    later = [m for m in months if m in (12, 24)]
    if later and r_les.random() < RECURRENCE_SHARE:
        recur = Recurrence(int(r_les.choice(later)), float(r_les.uniform(4, 10)), float(r_les.uniform(90, 300)),
                           edge_direction(r_les, breast, zone_centre, zone_d0, []),
                           str(r_les.choice(SHAPES, p=[0.3, 0.35, 0.35])), float(r_les.uniform(90, 200)),
                           float(r_les.uniform(-25, 5)))

    # --- dates and people
    birth = dt.date(1948, 1, 1) + dt.timedelta(days=int(r_case.integers(0, 30 * 365)))
    base_date = dt.date(2021, 1, 4) + dt.timedelta(days=int(r_case.integers(0, 600)))
    proc_date = base_date + dt.timedelta(days=int(r_case.integers(7, 41)))
    exam_days = [_exam_days(r_case, m) for m in months]
    patient = Patient(seed, breast, nipple, tumour, foci, f"ISER{seed:06d}", birth, laterality,
                      namespace="independent-sim-series")

    if recur is not None:  # the nodule at its largest (last exam), scaled down for earlier ones
        recur.first_days = exam_days[months.index(recur.first_month)]
        edge = dataclasses.replace(zone0, semi_axes=zone0.semi_axes * involution(recur.first_days)).radius_towards(
            recur.direction)
        recur.size_last = recur.size(exam_days[-1])
        centre = zone_centre + recur.direction * (edge + 0.3 * recur.first_size)
        recur.blob, _ = scale_to_diameter(r_les, recur.shape, centre, recur.size_last, by="largest_diameter_mm")

    out.mkdir(parents=True, exist_ok=True)
    base_s = render_study(out, "baseline", r_base, base_date, patient, None, None, small)
    time_points, exams = [], []
    for month, days, r_ex in zip(months, exam_days, r_exams.spawn(len(months)), strict=True):
        label = f"m{month:02d}"
        f = involution(days)
        g = 0.0 if fate == "none" else float(np.exp(-max(days - 21, 0) / tau_rim))
        rim_on = rim_init0 * g >= RIM_VISIBLE_PCT
        rim_mm = rim0 * (0.4 + 0.6 * g)
        zone = dataclasses.replace(zone0, semi_axes=zone0.semi_axes * f, rim_mm=rim_mm)
        fat = fat_share0 + (0.9 - fat_share0) * 0.5 * (1 - np.exp(-days / 400))
        site = Site(zone, zone_centre, (rim_init0 * g, rim_late) if rim_on else None, rim_t1_factor, float(fat),
                    haemorrhagic and days < 45, capsule_mm=capsule)
        if recur is not None and recur.blob is not None and days >= recur.first_days:
            blob = scaled_blob(recur.blob, recur.size(days) / recur.size_last)
            site.nodules.append(Lesion("nodule", blob, recur.initial, recur.late, "tumour", blob.measure(),
                                       "recurrence"))
        repos = draw_repositioning(r_ex, 0.5 * (patient.breast_mid + t_centroid))
        st = render_study(out, label, r_ex, proc_date + dt.timedelta(days=days), patient, site, repos, small)
        rim_k = st["kinetics"]["rim"]
        nod = site.nodules[0].measure if site.nodules else None
        time_points.append({
            "label": label, "month": month, "date": st["date"], "days_since_procedure": days,
            "layout": f"{st['protocol']['layout']} {st['protocol']['orientation']}",
            "ablation_zone": {"volume_ml": round(zone_volume_ml(zone), 3),
                              "diameter_mm": round(zone.diameter(), 2),
                              "semi_axes_mm": np.round(zone.semi_axes, 2).tolist(),
                              "centre_followup_lps_mm": lps(repos.to_followup(zone_centre)[0]),
                              "involution_factor": round(f, 3), "fat_share": round(float(fat), 2)},
            "rim": {"present": bool(rim_on), "thickness_mm": round(rim_mm, 2) if rim_on else 0.0,
                    "fade_factor": round(g, 3),
                    "initial_enhancement_pct": rim_k[0]["initial_enhancement_pct"] if rim_k else 0.0,
                    "late_change_pct": rim_k[0]["late_change_pct"] if rim_k else None,
                    "capsule_mm": None if rim_on or capsule is None else round(capsule, 2)},
            "recurrence": nod is not None, "recurrence_kind": "nodule" if nod is not None else None,
            "recurrence_size_mm": None if nod is None else nod["largest_diameter_mm"],
            "recurrence_diameter_mm": None if nod is None else nod["diameter_mm"],
            "recurrence_centre_followup_lps_mm": None if nod is None else lps(repos.to_followup(nod["centroid"])[0]),
            "recurrence_kinetics": st["kinetics"]["nodules"][0] if nod is not None else None,
            "nipple_lps_mm": lps(repos.to_followup(nipple.base)[0]),
            "tumour_centre_followup_lps_mm": lps(repos.to_followup(t_centroid)[0]),
            "transforms": {"displacement": repos.describe()},
            "study": {k: v for k, v in st.items() if not k.startswith("_")},
        })
        exams.append({"site": site, "repos": repos, "clean": st["_clean"], "grid": st["_grid"]})

    truth = {
        "simulator": "independent", "kind": "series", "seed": seed, "small": small, "months": list(months),
        "procedure_date": proc_date.isoformat(),
        "tumour": {"diameter_mm": tumour.measure["largest_diameter_mm"],
                   "volume_equivalent_diameter_mm": tumour.measure["diameter_mm"], "shape": tumour.blob.kind,
                   "centre_baseline_lps_mm": lps(t_centroid),
                   "kinetics_baseline": base_s["kinetics"]["tumour"][0]},
        "tumour_location": location(t_centroid, nipple.base, laterality),
        "nipple_lps_mm": {"baseline": lps(nipple.base)},
        "breast": {"laterality": laterality, "density": breast.density, "height_mm": round(breast.height, 1)},
        "zone_at_procedure": {"diameter_mm": round(zone_d0, 2), "volume_ml": round(zone_volume_ml(zone0), 3),
                              "centre_baseline_lps_mm": lps(zone_centre), "shrink": round(shrink, 3),
                              "tau_days": round(tau_zone, 1)},
        "rim_fate": fate, "rim_fade_days": None if fate == "none" else round(tau_rim, 1),
        "rim_at_procedure": {"thickness_mm": round(rim0, 2), "initial_enhancement_pct": round(rim_init0, 1)},
        "recurrence": None if recur is None else {
            "first_month": recur.first_month, "first_size_mm": round(recur.first_size, 2),
            "volume_doubling_days": round(recur.vdt, 1), "shape": recur.shape},
        "baseline": {k: v for k, v in base_s.items() if not k.startswith("_")},
        "time_points": time_points,
    }
    (out / "procedure.json").write_text(json.dumps(procedure_record(r_case, patient, proc_date), indent=1))
    (out / "truth.json").write_text(json.dumps(truth, indent=1))
    truth["_exams"] = exams
    truth["_baseline"] = {"clean": base_s["_clean"], "grid": base_s["_grid"]}
    return truth
