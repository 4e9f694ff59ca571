"""What the clinician acts on: the BI-RADS category, the caveats and the recommendations.

Pure: the procedure record, the probability and the findings in; notes and a category out. One
place decides them for a single follow-up (:mod:`followup.pipelines.assess`) and for one read with
earlier follow-ups (:mod:`followup.pipelines.surveillance`).

Safety rules (tests: tests/unit/pipelines/test_conclusion.py and the clinical scenario table):

* above 2 % (BI-RADS 3's limit) the category is 4A or higher and peripheral biopsies are advised;
  "no biopsy indication" is said only at 2 % or less, with no reason for a biopsy;
* every recorded in-situ component (any grade, any percentage), DCIS or mixed histology, lobular
  carcinoma or extensive in-situ disease gets peripheral-biopsy advice, whatever the MRI shows
  (:mod:`followup.record_rules`: MRI cannot exclude in-situ disease);
* every suspicious focus at the site gets category 4A or higher and a targeted biopsy;
* so does suspicious non-mass enhancement at or extending from the site (in-situ disease), with
  peripheral biopsies too; a focus inside it is the same finding (one targeted biopsy);
* every contraindication is listed for the banner, never in a reassuring style.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from followup import evidence as ev, record_rules
from followup.pipelines.assessment import Note
from followup.pipelines.birads import BiradsAssessment, Category, categorise
from followup.pipelines.probability import SITE_BAND_MM, Confidence, ProbabilityResult, Question
from followup.pipelines.segmentation.model import Focus, NonMassEnhancement
from followup.procedure import ProcedureRecord


def always_caveats() -> list[Note]:
    lo, hi = ev.MRI_NPV_Z1072[1], ev.MRI_NPV_Z1072[2]
    return [
        Note("endpoint", ev.ENDPOINT + " " + ev.NOT_ASSESSED),
        Note("mri-npv", f"MRI's negative predictive value for residual invasive tumour after "
             f"cryoablation is only {ev.MRI_NPV_INVASIVE:.0%} (published: {ev.MRI_NPV_Z1072[0]:.1%}, "
             f"90% CI {lo:.1%}-{hi:.1%}, ACOSOG Z1072; 15/18 = 83%, Poplack 2015): a negative MRI "
             "does not exclude residual disease."),
        Note("insitu-invisible", f"{ev.INSITU_LOWGRADE_MRI_INVISIBLE:.0%} of low-grade in-situ lesions "
             "are not visible on MRI: MRI cannot exclude an in-situ component; peripheral biopsies "
             "exclude an extensive in-situ component."),
        Note("interval-model-based", "The interval is model-based: " + ev.INTERVAL_METHOD + "."),
    ]


def record_caveats(record: ProcedureRecord) -> list[Note]:
    return [Note(code, text) for code, text in record_rules.caveats(record)]


def contraindications(record: ProcedureRecord) -> tuple[Note, ...]:
    return tuple(Note(code, text) for code, text in record_rules.contraindications(record))


def category(probability: ProbabilityResult, suspicious_site: Sequence[Focus], *, imaging_used: bool,
             benign_appearance: bool, suspicious_nme: Sequence[NonMassEnhancement] = ()) -> BiradsAssessment:
    """The category; a suspicious focus or suspicious non-mass enhancement at the site: 4A or higher."""
    return categorise("complete", probability.probability, imaging_used=imaging_used,
                      suspicious_at_site=bool(suspicious_site) or bool(suspicious_nme),
                      benign_appearance=benign_appearance and not suspicious_nme,
                      confidence_normal=probability.confidence == Confidence.NORMAL)


def _biopsy_reasons(record: ProcedureRecord, probability: ProbabilityResult, birads: BiradsAssessment,
                    suspicious_site: Sequence[Focus], nme: Sequence[NonMassEnhancement] = ()) -> list[str]:
    reasons = record_rules.biopsy_reasons(record)
    if suspicious_site:
        reasons.append("suspicious enhancement at the ablation site")
    if nme:
        reasons.append("suspicious non-mass enhancement at or extending from the ablation site (how in-situ "
                       "disease looks: sample along its extent and around the zone)")
    p = probability.probability
    if p > ev.BIRADS_3_MAX:
        reasons.append(f"the probability of disease at the site ({p:.0%}) is above BI-RADS 3's 2% "
                       f"(category {birads.category.value}: tissue diagnosis)")
    elif birads.category is Category.INCOMPLETE and probability.interval[1] > ev.BIRADS_3_MAX:
        reasons.append("the imaging could not be trusted fully and a probability above 2% is not excluded")
    return reasons


def _lps(point) -> str:
    return ", ".join(f"{v:.0f}" for v in point)


def recommendations(record: ProcedureRecord, probability: ProbabilityResult, birads: BiradsAssessment,
                    foci: Sequence[Focus], *, registration_poor: bool = False, zone_found: bool = True,
                    trend_reason: str | None = None, nme: Sequence[NonMassEnhancement] = (),
                    where: Callable[[np.ndarray], str | None] | None = None) -> list[Note]:
    """Peripheral biopsies with every reason, a targeted biopsy per suspicious finding at the site
    (focus or non-mass enhancement; a focus inside a suspicious NME is that finding), remote
    findings, a registration check, and surveillance only where nothing calls for a biopsy.
    ``where(point)``: a point's clock face and distance from the nipple, when known (the
    targeted biopsies say it before their LPS coordinates)."""
    def at(point: np.ndarray) -> str:
        text = where(point) if where is not None else None
        lps = f"LPS ({_lps(point)}) mm"
        return f"{text} ({lps})" if text else lps

    site_nme = [m for m in nme if m.suspicious and m.distance_to_zone_edge_mm <= SITE_BAND_MM]
    in_nme = {label for m in site_nme for label in m.focus_labels}
    site = [f for f in foci if f.suspicious and f.distance_to_zone_edge_mm <= SITE_BAND_MM]
    remote = [f for f in foci if f.suspicious and f.distance_to_zone_edge_mm > SITE_BAND_MM and f.label not in in_nme]
    out = []
    if trend_reason:
        out.append(Note("surveillance-biopsy", "Biopsy of the ablation site is recommended: "
                        f"{trend_reason}; recurrence must be excluded."))
    reasons = _biopsy_reasons(record, probability, birads, site, site_nme)
    if reasons:
        out.append(Note("peripheral-biopsy", "Peripheral biopsies around the ablation zone are "
                        "recommended: " + "; ".join(reasons) + "."))
    for m in site_nme:
        out.append(Note("targeted-biopsy",
                        f"Targeted biopsy (MRI-guided) of the {m.distribution} {m.internal} non-mass enhancement "
                        f"({m.extent_mm:.0f} mm, "
                        f"{m.curve_type if m.kinetics_reliable else 'curve not assessable'}) from "
                        f"{at(m.start_lps)} to {at(m.end_lps)}, sampled along its extent."))
    for f in site:
        if f.label in in_nme:
            continue  # the same finding as the NME it lies in
        out.append(Note("targeted-biopsy",
                        f"Targeted biopsy (second-look ultrasound or MRI-guided) of the "
                        f"{f.curve_type if f.kinetics_reliable else 'curve not assessable'} "
                        f"{'mass' if f.largest_diameter_mm >= ev.SMALL_FOCUS_MM else 'focus'} of "
                        f"{f.largest_diameter_mm:.0f} mm at {at(f.centre_lps)}."))
    if remote:
        out.append(Note("remote-finding", f"{len(remote)} suspicious enhancing finding(s) more than "
                        f"{SITE_BAND_MM:g} mm from the ablation zone: assess on their own (BI-RADS)."))
    if registration_poor:
        found = ("the ablation zone was found in the follow-up itself; check that it is the treated "
                 "site" if zone_found else "the ablation zone could not be found either")
        out.append(Note("review-registration", "Check the mapped tumour position on the images: "
                        f"automatic registration to the baseline was poor ({found})."))
    if birads.category is Category.INCOMPLETE:
        out.append(Note("radiologist-review", "BI-RADS 0: the imaging could not be assessed automatically; "
                        "the radiologist reads the study."))
    if not reasons and not trend_reason and birads.category in (Category.BENIGN, Category.PROBABLY_BENIGN):
        follow = "about 6 months" if birads.category is Category.PROBABLY_BENIGN else "the next scheduled time"
        what = "recurrence" if probability.question is Question.RECURRENCE else "residual disease"
        out.append(Note("imaging-follow-up", f"BI-RADS {birads.category.value}: no biopsy indication from "
                        f"this study ({what} at the site {probability.probability:.1%} <= 2%); continue "
                        f"imaging surveillance (follow-up breast MRI at {follow}, per local protocol)."))
    return out


__all__ = ["always_caveats", "category", "contraindications", "recommendations", "record_caveats"]
