"""Every clinical figure the residual-tumour model uses, each from one source, with its arithmetic.

Source file: ../shared/clinical-evidence.md (figures read from abstracts). A figure is either a
``Figure`` (a proportion with a Beta distribution: Jeffreys Beta(k + 0.5, n - k + 0.5) from a
source's own counts, or, where the source gives no count, an *effective* sample size that is an
assumption and says so) or an ``OddsFactor`` (a multiplier of the odds with a plausible range).
``tests/unit/test_evidence.py`` redoes every derivation below from the source's numbers.

**The endpoint** (:data:`ENDPOINT`): residual (or, in surveillance, recurrent) invasive or in-situ
disease *at the ablation site* -- the ablation zone and a 10 mm band around its edge -- at this
examination. The MRI read covers the site only, so only site figures are used: ACOSOG Z1072's
whole-breast failure rate (21/87) is not the prior, its site failures (7/87) are.

**Structural uncertainty.** Where two or more sources are defensible for one quantity and disagree
(the prior: Z1072, Poplack, the 2024 pooled series; a negative read: Z1072, Poplack), the model
averages over them with equal weights: the point value is the mean of the posteriors, and every
Monte Carlo draw of the interval first draws which source, then the source's own figures. The
interval is therefore *model-based*: parameter and source uncertainty together, under the
assumptions flagged here.

**Dependence between drivers** (each piece of evidence counted once):

* a suspicious focus at the site and the margin coverage measure the same thing (residual disease
  at the periphery): the margin factor applies only when no suspicious focus is counted;
* a suspicious focus and non-mass enhancement at the site are one finding: the MRI read counts the
  one with the larger ratio, never both (:func:`nme_lr`);
* a focus's morphology and its kinetics are one joint likelihood ratio
  (:func:`focus_likelihood_ratio`): the curve's ratio is conditional on a mass-like finding, its
  benign arm from post-treatment fat necrosis, never Kuhl's untreated benign lesions on top of a
  "positive MRI" that already required the curve;
* in surveillance, "new or grown enhancement against the previous follow-up" and the focus itself
  are taken as conditionally independent given the disease (an assumption: fat necrosis can also
  appear new), with a wide range;
* the record's factors (in-situ component, lobular, cycles) and the size are taken as independent
  of each other (an assumption; no study gives their joint effect).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Figure:
    """A proportion with its Beta(a, b) uncertainty."""

    value: float
    a: float
    b: float
    source: str
    assumption: bool = False

    @classmethod
    def from_counts(cls, events: int, n: int, source: str) -> Figure:
        # Jeffreys prior Beta(0.5, 0.5) updated with the source's counts; the point value is the
        # source's own proportion
        return cls(events / n, events + 0.5, n - events + 0.5, source)

    @classmethod
    def from_value(cls, value: float, n_eff: float, source: str, assumption: bool = False) -> Figure:
        return cls(value, value * n_eff, (1.0 - value) * n_eff, source, assumption)

    @property
    def mean(self) -> float:
        return self.a / (self.a + self.b)


@dataclass(frozen=True)
class OddsFactor:
    """A multiplier of the odds of disease at the site (a likelihood ratio or an odds ratio)."""

    value: float
    low: float  # plausible range used for the interval (log-uniform between low and high)
    high: float
    source: str
    assumption: bool = False


def odds(p: Any) -> Any:
    return p / (1.0 - p)


def logit(p: float) -> float:
    return math.log(odds(p))


# --- What the number is about ------------------------------------------------------------------
SITE_BAND_MM = 10.0  # the site: the ablation zone and this band around its edge
ENDPOINT = ("The probability is that of residual (or, in surveillance, recurrent) invasive or in-situ "
            "disease at the ablation site (the ablation zone and a 10 mm band around its edge) at this "
            "examination.")
# What every report says this analysis does not read (issue 24): the radiologist reads them.
NOT_ASSESSED = ("Not assessed by this analysis: the breast outside the ablation site, the contralateral "
                "breast, both axillae, and the non-contrast sequences (T2-weighted, diffusion-weighted); "
                "the radiologist reads them.")
INTERVAL_KIND = "model-based"
INTERVAL_METHOD = ("model-based interval: 95% of Monte Carlo draws over the sources' own uncertainty "
                   "(Beta distributions from their counts) and over which source applies (equal-weight "
                   "average of the defensible alternatives); spreads marked 'assumption' are not published")

# --- Caveats every report quotes -----------------------------------------------------------------
# Deck (cryoablation-deck-fr.txt): "VPN de l'IRM pour prédire le reliquat tumoral = 86 %
# (reliquat invasif)": quoted in the caveat, never used to calibrate (no population named, invasive
# only). Published beside it: ACOSOG Z1072 (Simmons, Ann Surg Oncol 2016) MRI NPV for residual IBC
# or DCIS 81.2 % (90 % CI 71.4-88.8); Poplack (AJR 2015) 15/18 = 83 %.
MRI_NPV_INVASIVE = 0.86
MRI_NPV_Z1072 = (0.812, 0.714, 0.888)
MRI_NPV_POPLACK = (15, 18)
# Deck: "31 % des lésions in situ de bas grade non visibles en IRM"; most likely Malur et al.,
# Breast Cancer Res 2001 (26/38 in-situ cancers seen: 31.6 % missed, all grades).
INSITU_LOWGRADE_MRI_INVISIBLE = 0.31

# --- Timing ------------------------------------------------------------------------------------
# Deck: "Surveillance post par IRM à 3 semaines (risque FP si précoce)".
MIN_DAYS_AFTER_PROCEDURE = 21
# From this many days after the procedure a follow-up is a *surveillance* examination: the question
# becomes recurrence (clinical-evidence.md, "Surveillance is a different question"). Schedules: MRI at
# 3 weeks (residual check), then about 6, 12, 24 months (Kawamoto 2024: 1, 6, 12, 24, 36, 60 months).
# 4 months lies between the residual check (<= ~6 weeks, Poplack 25-40 days) and the 6-month exam:
# a product choice (assumption).
SURVEILLANCE_FROM_DAYS = 120
DAYS_PER_MONTH = 30.4375

# --- Prior: residual disease at the site after cryoablation ----------------------------------------
# Three defensible sources for the site endpoint, averaged (structural uncertainty):
# ACOSOG Z1072 (Simmons 2016): 21 of 87 had residual IBC/DCIS anywhere; 14 of those 21 were
# multifocal disease outside the ablation zone, so residual at the site was 21 - 14 = 7 of 87.
Z1072_RESIDUAL_ANYWHERE = (21, 87)
Z1072_MULTIFOCAL_OUTSIDE = 14
PRIOR_SITE_Z1072 = Figure.from_counts(
    Z1072_RESIDUAL_ANYWHERE[0] - Z1072_MULTIFOCAL_OUTSIDE, Z1072_RESIDUAL_ANYWHERE[1],
    "ACOSOG Z1072 (Simmons 2016): residual at the site 7/87 (21 failures less 14 multifocal outside the zone)")
# Poplack 2015 (IDC <= 15 mm, surgery after cryoablation): residual in 3 of 20 (sensitivity 0/3,
# specificity 15/17), all at the periphery of the ablation site: 3/20 at the site.
POPLACK_RESIDUAL = 3
POPLACK_NEGATIVE_TRUE = 15  # true negatives of 17 without residual
POPLACK_N = 20
PRIOR_SITE_POPLACK = Figure.from_counts(
    POPLACK_RESIDUAL, POPLACK_N, "Poplack 2015 (AJR): residual 3/20, all at the periphery of the site")
# Pooled 2024 (Breast Cancer, doi 10.1007/s12282-024-01643-w): residual after cryoablation then
# surgery 12.0 %; site not separated (an upper bound for the site) and no total in the abstract:
# effective n = 60 is an assumption.
PRIOR_SITE_POOLED = Figure.from_value(
    0.12, 60, "Pooled 2024 (doi 10.1007/s12282-024-01643-w): residual 12.0% (site not separated; n assumed)",
    assumption=True)
PRIOR_SITE_SOURCES = (PRIOR_SITE_Z1072, PRIOR_SITE_POPLACK, PRIOR_SITE_POOLED)
# The series' tumours: Z1072 IDC <= 20 mm, Poplack IDC <= 15 mm, pooled mostly <= 15 mm. Their
# typical diameter is not in the abstracts: 12 mm is an assumption (the reference of the size slope).
PRIOR_REFERENCE_DIAMETER_MM = 12.0

# Size: continuous in diameter, log-odds linear, slope from the deck's own two figures (one source):
# "< 15 mm: 95-100 % complete response" -> 97.5 % at the band's middle, 10 mm (5-15 mm);
# "> 2 cm: complete response divided by 2" -> 97.5 % / 2 = 48.75 % at 25 mm (20-30 mm).
# slope = (logit(1 - 0.4875) - logit(1 - 0.975)) / (25 - 10) = (0.0500 + 3.6636) / 15 = 0.2476 / mm
# (odds x 2.10 from 12 to 15 mm, x 7.2 from 12 to 20 mm). Pfleiderer 2002 agrees in direction
# (< 16 mm 5/5 complete, >= 23 mm 0/11). Its range (x 0.6 to x 1.4 of the slope) is an assumption.
DECK_CR_INDICATION = 0.975
DECK_CR_INDICATION_AT_MM = 10.0
DECK_CR_ABOVE_2CM = DECK_CR_INDICATION / 2.0
DECK_CR_ABOVE_2CM_AT_MM = 25.0
SIZE_LOG_ODDS_PER_MM = (logit(1.0 - DECK_CR_ABOVE_2CM) - logit(1.0 - DECK_CR_INDICATION)) \
    / (DECK_CR_ABOVE_2CM_AT_MM - DECK_CR_INDICATION_AT_MM)
SIZE_SLOPE_RANGE = (0.6, 1.4)
SIZE_SOURCE = ("Deck: < 15 mm 95-100% complete, > 2 cm complete response halved: log-odds slope "
               f"{SIZE_LOG_ODDS_PER_MM:.3f}/mm from a {PRIOR_REFERENCE_DIAMETER_MM:g} mm reference (assumed)")

# --- Odds factors from the procedure record (no published odds ratio: assumptions) ---------------
# Sabel 2004: 1.0-1.5 cm successful only without a significant DCIS component; non-calcified
# DCIS caused most failures. Pfleiderer 2005: residual DCIS beyond the cryosite in 5/29.
OR_INSITU_COMPONENT = OddsFactor(2.0, 1.3, 3.5,
                                 "Sabel 2004: DCIS caused most failures (no OR published)", True)
# Deck: extensive DCIS (> 25 % of the biopsy) is a contraindication; pure DCIS histology counts as
# extensive (its whole extent is in situ). Assumption: odds x 3.
OR_EXTENSIVE_DCIS = OddsFactor(3.0, 2.0, 5.0, "Deck: > 25% DCIS is a contraindication", True)
# Deck: lobular carcinoma is a contraindication (excluded from Z1072). Assumption: odds x 2.
OR_LOBULAR = OddsFactor(2.0, 1.3, 3.5, "Deck: lobular carcinoma is a contraindication", True)
# Deck: >= 2 freeze-thaw cycles. Fewer: assumption odds x 1.5.
OR_SINGLE_FREEZE = OddsFactor(1.5, 1.1, 2.5, "Deck: >= 2 freeze-thaw cycles", True)
# Ablation zone that does not cover tumour + margin on follow-up MRI (only without a suspicious
# focus: both measure disease at the periphery). Assumption: odds x 1.5 (residual disease sits at
# the periphery: Poplack 2015, Clin Breast Cancer 2023).
OR_MARGIN_NOT_COVERED = OddsFactor(1.5, 1.1, 2.5,
                                   "Poplack 2015; Clin Breast Cancer 2023: residual at the periphery",
                                   True)

# --- A negative read of the site (no suspicious enhancement) ---------------------------------------
# Two sources, averaged:
# Z1072: NPV 81.2 % at its own prevalence 21/87 (its endpoint: residual IBC or DCIS; the closest
# published pairing). LR- = ((1 - NPV) / NPV) / (prev / (1 - prev))
#        = (0.188 / 0.812) / (21 / 66) = 0.2315 / 0.3182 = 0.728.
# Its 90 % CI 71.4-88.8 gives the spread: a Beta with n_eff = NPV(1-NPV)/se^2 - 1, se = (88.8 - 71.4)
# / 2 / 1.645 = 5.29 points -> n_eff = 0.812 x 0.188 / 0.0529^2 - 1 = 53.6.
Z1072_NPV = Figure.from_value(
    MRI_NPV_Z1072[0],
    MRI_NPV_Z1072[0] * (1 - MRI_NPV_Z1072[0]) / ((MRI_NPV_Z1072[2] - MRI_NPV_Z1072[1]) / 2 / 1.645) ** 2 - 1,
    "ACOSOG Z1072: MRI NPV 81.2% (90% CI 71.4-88.8) at prevalence 21/87")
Z1072_PREVALENCE = Figure.from_counts(21, 87, "ACOSOG Z1072: residual IBC/DCIS 21/87")
# Poplack 2015: sensitivity 0/3, specificity 15/17: with Jeffreys estimates (0.5/4 = 0.125 and
# 15.5/18 = 0.861), LR- = (1 - 0.125) / 0.861 = 1.016: a negative MRI carries no information.
POPLACK_SENSITIVITY = Figure.from_counts(0, POPLACK_RESIDUAL, "Poplack 2015: MRI sensitivity 0/3")
POPLACK_SPECIFICITY = Figure.from_counts(
    POPLACK_NEGATIVE_TRUE, POPLACK_N - POPLACK_RESIDUAL, "Poplack 2015: MRI specificity 15/17")
NEGATIVE_READ_SOURCES = ("Z1072 (NPV 81.2% at 21/87: LR- 0.73)", "Poplack 2015 (sensitivity 0/3: LR- 1.0)")


def lr_negative_z1072(npv: Any, prevalence: Any) -> Any:
    """LR- from an NPV at a prevalence (floats or numpy arrays)."""
    return odds(1.0 - npv) / odds(prevalence)


def lr_negative_poplack(sensitivity: Any, specificity: Any) -> Any:
    """LR- from a sensitivity and a specificity (floats or numpy arrays)."""
    return (1.0 - sensitivity) / specificity


# --- A suspicious mass at the site: one joint ratio for morphology and kinetics ---------------------
# Morphology (a nodular mass at or inside the zone edge): its false-positive rate after
# cryoablation from Poplack (2/17 positive reads without residual; Jeffreys 2.5/18 = 0.139); its
# sensitivity is not published for the site: the sensitivity implied by the negative read
# (1 - LR- x specificity: 1 - 0.728 x 0.861 = 0.373 with Z1072's LR-) is used, an assumption that
# pairs two sources. LR_mass = 0.373 / 0.139 = 2.68 (floored at 1: a mass is never reassuring).
MASS_SENSITIVITY_RANGE = (0.05, 0.95)
# Kinetics given a mass: cancers' curves from Kuhl et al. (Radiology 1999;211:101-10); the benign arm
# from post-treatment fat necrosis (Eur J Radiol 2011, PMID 21742453: continuous increase 10,
# plateau 2, washout 3 of 15 enhancing lesions), not Kuhl's untreated benign lesions.
# LR persistent = 0.089 / (10/15) = 0.13; plateau = 0.336 / (2/15) = 2.52; washout = 0.574 / (3/15) = 2.87.
CURVES = ("persistent", "plateau", "washout")
KUHL_CANCERS = {"persistent": 0.089, "plateau": 0.336, "washout": 0.574}
# Kuhl's group size is not in the evidence file: 100 cancers is an assumption (spread only).
KUHL_N_CANCERS = 100
FAT_NECROSIS_CURVES = {"persistent": 10, "plateau": 2, "washout": 3}
KINETICS_SOURCE = ("curve: cancers Kuhl 1999 (8.9/33.6/57.4%), benign post-treatment fat necrosis "
                   "PMID 21742453 (10/2/3 of 15)")
# ACR BI-RADS Atlas, 5th ed. (2013), MRI: morphology takes precedence over kinetics: a lesion with
# suspicious morphology is not downgraded by a benign (persistent) curve. The joint ratio of a
# suspicious mass is floored at 1 (our reading of the rule: an assumption, not a published figure).
MORPHOLOGY_OVER_KINETICS = ("BI-RADS 2013: suspicious morphology is not downgraded by persistent kinetics "
                            "(ratio floored at 1, an assumption)")
# BI-RADS: enhancing "foci" < 5 mm are mostly benign; assumption: ratio x 0.5 for a focus < 5 mm
# (still floored at 1 when it is suspicious).
LR_SMALL_FOCUS = OddsFactor(0.5, 0.3, 0.8, "BI-RADS: foci < 5 mm are mostly benign", True)
SMALL_FOCUS_MM = 5.0


def kinetics_lr(curve: str) -> float:
    """The curve's likelihood ratio given a mass (point values of the two arms)."""
    benign = FAT_NECROSIS_CURVES[curve] / sum(FAT_NECROSIS_CURVES.values())
    return KUHL_CANCERS[curve] / benign


def mass_lr(lr_negative: float, specificity: float) -> float:
    """The morphology ratio of a mass at the site: implied sensitivity over the false-positive rate."""
    lo, hi = MASS_SENSITIVITY_RANGE
    sens = min(max(1.0 - lr_negative * specificity, lo), hi)
    return max(sens / (1.0 - specificity), 1.0)


# Non-mass enhancement at or extending from the site (linear, segmental, clumped: how in-situ disease
# looks; Sabel 2004, Pfleiderer 2005: non-calcified DCIS caused most failures). No published
# figure for NME at a cryoablation site: it is taken as a positive read, with a mass's ratio (the
# series' positive reads were suspicious enhancement of any kind: Poplack's 2/17 false positives,
# the implied sensitivity), times its curve given it, floored at 1 (morphology before kinetics:
# clumped and linear / segmental NME are suspicious whatever the curve). With Z1072's LR-:
# 0.373 / 0.139 = 2.68 (persistent: floored at 1; plateau x 2.52 = 6.76; washout x 2.87 = 7.70);
# with Poplack's LR- (1.016) the implied sensitivity is 0.125 and the ratio is floored at 1.
# ASSUMPTION: that NME carries a mass's ratio (tests/unit/pipelines/test_nme_conclusion.py redoes the arithmetic).
NME_AS_POSITIVE_READ = ("ASSUMPTION: non-mass enhancement taken as a positive read with a mass's ratio "
                        "(Poplack 2015 specificity 15/17 with the negative read's implied sensitivity; "
                        "no published figure for NME after cryoablation)")


def nme_lr(lr_negative: float, specificity: float, curve: str | None) -> float:
    """The ratio of suspicious non-mass enhancement at the site (point values): a positive read's
    (:func:`mass_lr`) times its curve's (``curve`` None or not a BI-RADS curve: none), floored at 1."""
    lr = mass_lr(lr_negative, specificity)
    if curve in CURVES:
        lr *= kinetics_lr(curve)
    return max(lr, 1.0)


# Zone found in the follow-up while registration to the baseline was poor: the probability that
# the region taken for the ablation zone is not the treated site. No paper gives it: 0.15 with a
# wide spread (effective n = 8) is an assumption; the imaging likelihood ratio is then
# (1 - q) x LR + q.
ZONE_IDENTITY_UNCERTAIN = Figure.from_value(
    0.15, 8, "Assumption: zone found without a confirming registration may not be the treated site",
    assumption=True)

# --- Surveillance: recurrence by time since the procedure ------------------------------------------
# ICE3 (Fine et al., Ann Surg Oncol 2021, 2024): ipsilateral breast tumour recurrence 2.06 % at about
# 35 months, 4.3 % at 60 months (ipsilateral breast, not the site only: an upper bound, said in the
# driver). Cumulative incidence by piecewise-constant hazard: H(35) = -ln(1 - 0.0206) = 0.02082,
# hazard 0.000595 / month before 35 months; H(60) = -ln(1 - 0.043) = 0.04395, hazard
# (0.04395 - 0.02082) / 25 = 0.000925 / month after (carried on beyond 60 months).
ICE3_RECURRENCE = ((35.0, 0.0206), (60.0, 0.043))
ICE3_SOURCE = "ICE3 (Fine 2021, 2024): ipsilateral recurrence 2.06% at ~35 months, 4.3% at 5 years"
# The hazards' spread (x 0.5 to x 2) is an assumption (ICE3's counts are not in the evidence file).
ICE3_HAZARD_RANGE = (0.5, 2.0)


def recurrence_by(months: float, hazard_scale: float = 1.0) -> float:
    """Cumulative recurrence probability ``months`` after the procedure (ICE3, see above)."""
    (m1, p1), (m2, p2) = ICE3_RECURRENCE
    h1 = -math.log(1.0 - p1) / m1
    h2 = (-math.log(1.0 - p2) + math.log(1.0 - p1)) / (m2 - m1)
    m = max(months, 0.0)
    cum = h1 * min(m, m1) + h2 * max(m - m1, 0.0)
    return 1.0 - math.exp(-hazard_scale * cum)


# Zone involuting against the previous follow-up (the expected course of fat necrosis): no published
# ratio, assumption x 0.8 (0.6-1.0): a weak reassurance, never below the earlier reads' own.
LR_INVOLUTING = OddsFactor(0.8, 0.6, 1.0, "Assumption (no published figure): ablation zone involuting "
                           "against the previous follow-up, as fat necrosis does (Kawamoto 2021: ~58% over "
                           "2 years)", True)

# --- Decision thresholds (ACR BI-RADS MRI, 5th ed., 2013) ------------------------------------------
# Category 3 (probably benign) only at a likelihood of malignancy <= 2 %; 4A > 2-10 %, 4B > 10-50 %,
# 4C > 50 to < 95 %, 5 >= 95 %; 4 and 5: tissue diagnosis.
BIRADS_3_MAX = 0.02
BIRADS_4A_MAX = 0.10
BIRADS_4B_MAX = 0.50
BIRADS_5_MIN = 0.95
# A driver that is an assumption and moves the odds by this factor or more (either way) lowers the
# confidence: the number rests on it.
HEAVY_ASSUMPTION_FACTOR = 3.0
# Monte Carlo draws for the probability interval (fixed seed: the same inputs give the same report).
INTERVAL_DRAWS = 4000
INTERVAL_LEVEL = 0.95
