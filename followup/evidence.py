"""Every clinical figure the residual-tumour model uses, with its source and its uncertainty.

Source file: ../shared/clinical-evidence.md (figures read from abstracts). Each figure is a
``Figure``: a point value plus a Beta distribution (from trial counts where the abstract gives
them, otherwise an *effective* sample size that is said to be an assumption). The probability
interval of a report is the spread of the posterior when these figures are drawn from their
distributions (Monte Carlo), so it comes from the published uncertainty, not from decoration.

Figures marked ``assumption=True`` are expert modelling choices that no cited paper gives as a
number; the report lists them among its drivers so a reader can see what rests on them.
"""

from __future__ import annotations

from dataclasses import dataclass


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
        # Jeffreys prior Beta(0.5, 0.5) updated with the trial's counts.
        return cls(events / n, events + 0.5, n - events + 0.5, source)

    @classmethod
    def from_value(cls, value: float, n_eff: float, source: str, assumption: bool = False) -> Figure:
        return cls(value, value * n_eff, (1.0 - value) * n_eff, source, assumption)


@dataclass(frozen=True)
class OddsFactor:
    """A multiplier of the odds of residual disease (a likelihood ratio or an odds ratio)."""

    value: float
    low: float  # plausible range used for the interval (log-uniform between low and high)
    high: float
    source: str
    assumption: bool = False


# --- Caveats every report quotes -------------------------------------------------------------
# Deck (cryoablation-deck-fr.txt): "VPN de l'IRM pour prédire le reliquat tumoral = 86 %
# (reliquat invasif)". Published range beside it: ACOSOG Z1072 (Simmons, Ann Surg Oncol 2016)
# MRI NPV for residual IBC or DCIS 81.2 % (90 % CI 71.4-88.8); Poplack (AJR 2015) 15/18 = 83 %.
MRI_NPV_INVASIVE = 0.86
MRI_NPV_Z1072 = (0.812, 0.714, 0.888)
MRI_NPV_POPLACK = (15, 18)
# Deck: "31 % des lésions in situ de bas grade non visibles en IRM"; most likely Malur et al.,
# Breast Cancer Res 2001 (26/38 in-situ cancers seen: 31.6 % missed, all grades).
INSITU_LOWGRADE_MRI_INVISIBLE = 0.31

# --- Timing ----------------------------------------------------------------------------------
# Deck: "Surveillance post par IRM à 3 semaines (risque FP si précoce)".
MIN_DAYS_AFTER_PROCEDURE = 21

# --- Prior: residual disease after cryoablation, by tumour size -----------------------------
# < 10 mm: Z1072 interim (2014) 94 % complete in tumours < 1 cm; Sabel 2004: 100 % < 1.0 cm.
# The abstracts give no counts for this subgroup: effective n = 30 is an assumption.
PRIOR_BELOW_10MM = Figure.from_value(
    0.06, 30, "Z1072 interim 2014: 94% complete < 1 cm; Sabel 2004: 100% < 1.0 cm", assumption=True)
# 10 to < 15 mm (the indication): pooled residual after cryoablation then surgery 12.0 %
# (Breast Cancer 2024, doi 10.1007/s12282-024-01643-w); Poplack 2015 (IDC <= 15 mm): 3/20.
# Effective n = 60 is an assumption (the pooled abstract gives no total).
PRIOR_10_TO_15MM = Figure.from_value(
    0.12, 60, "Pooled 2024 (doi 10.1007/s12282-024-01643-w): 12.0%; Poplack 2015: 3/20", assumption=True)
# 15 to 20 mm: ACOSOG Z1072 (IDC <= 2 cm): residual IBC/DCIS in 21/87 (complete 66/87 = 75.9 %).
PRIOR_15_TO_20MM = Figure.from_counts(21, 87, "ACOSOG Z1072 (Simmons 2016): 66/87 complete")
# > 20 mm: deck "T > 2 cm: RC divisé par 2": complete response 75.9 % / 2 = 38 %, residual 62 %;
# Pfleiderer 2002: >= 23 mm 11/11 incomplete. Effective n = 20 is an assumption.
PRIOR_ABOVE_20MM = Figure.from_value(
    1.0 - 0.759 / 2.0, 20, "Deck: > 2 cm halves complete response; Pfleiderer 2002: >= 23 mm 0/11",
    assumption=True)
# Z1072's prevalence of residual disease, at which the 86 % NPV is calibrated.
CALIBRATION_PREVALENCE = PRIOR_15_TO_20MM

# --- Odds modifiers from the procedure record ------------------------------------------------
# Sabel 2004: 1.0-1.5 cm successful only without a significant DCIS component; non-calcified
# DCIS caused most failures. Pfleiderer 2005: residual DCIS beyond the cryosite in 5/29.
# No odds ratio is published: 2.0 (range 1.3-3.5) is an assumption.
OR_INSITU_COMPONENT = OddsFactor(2.0, 1.3, 3.5,
                                 "Sabel 2004: DCIS caused most failures (no OR published)", True)
# Deck: extensive DCIS (> 25 % of the biopsy) is a contraindication. Assumption: odds x 3.
OR_EXTENSIVE_DCIS = OddsFactor(3.0, 2.0, 5.0, "Deck: > 25% DCIS is a contraindication", True)
# Deck: lobular carcinoma is a contraindication (excluded from Z1072). Assumption: odds x 2.
OR_LOBULAR = OddsFactor(2.0, 1.3, 3.5, "Deck: lobular carcinoma is a contraindication", True)
# Deck: >= 2 freeze-thaw cycles. Fewer: assumption odds x 1.5.
OR_SINGLE_FREEZE = OddsFactor(1.5, 1.1, 2.5, "Deck: >= 2 freeze-thaw cycles", True)
# Ablation zone that does not cover tumour + margin on follow-up MRI. Assumption: odds x 1.5
# (residual disease sits at the periphery: Poplack 2015, Clin Breast Cancer 2023).
OR_MARGIN_NOT_COVERED = OddsFactor(1.5, 1.1, 2.5,
                                   "Poplack 2015; Clin Breast Cancer 2023: residual at the periphery",
                                   True)

# --- Imaging likelihood ratios ---------------------------------------------------------------
# MRI specificity after cryoablation: Poplack 2015, 15/17.
MRI_SPECIFICITY = Figure.from_counts(15, 17, "Poplack 2015 (AJR): specificity 15/17")
# NPV figure used for calibration, with Z1072's interval width (90 % CI 71.4-88.8 -> n_eff ~ 53).
MRI_NPV = Figure.from_value(MRI_NPV_INVASIVE, 53, "Deck: NPV 86%; spread from Z1072 90% CI 71.4-88.8")
# Kinetics of an enhancing focus (Kuhl et al., Radiology 1999;211:101-10): share of cancers and
# of benign lesions per curve type. Group sizes are not in the evidence file: 100 cancers and
# 160 benign lesions are assumed for the spread.
KUHL_CANCERS = {"persistent": 0.089, "plateau": 0.336, "washout": 0.574}
KUHL_BENIGN = {"persistent": 0.830, "plateau": 0.115, "washout": 0.055}
KUHL_N_CANCERS = 100
KUHL_N_BENIGN = 160
KUHL_SOURCE = "Kuhl et al., Radiology 1999: LR persistent 0.11, plateau 2.9, washout 10.4"
# BI-RADS: enhancing "foci" < 5 mm are mostly benign; assumption: LR x 0.5 for a focus < 5 mm.
# ACR BI-RADS Atlas, 5th ed. (2013), MRI: morphology takes precedence over kinetics: a lesion
# with suspicious morphology is not downgraded by a benign (persistent) curve. Applied as a floor:
# a nodular focus's positive-MRI x kinetic likelihood ratio is at least 1 (never reassuring). The
# floor's value is our reading of the rule (an assumption), not a published figure.
MORPHOLOGY_OVER_KINETICS = ("BI-RADS 2013: suspicious morphology is not downgraded by persistent kinetics "
                            "(ratio floored at 1, an assumption)")
LR_SMALL_FOCUS = OddsFactor(0.5, 0.3, 0.8, "BI-RADS: foci < 5 mm are mostly benign", True)
SMALL_FOCUS_MM = 5.0

# Zone found in the follow-up while registration to the baseline was poor: the probability that
# the region taken for the ablation zone is not the treated site (so its findings say nothing
# about the tumour). No paper gives it: 0.15 with a wide spread (effective n = 8) is an
# assumption; the imaging likelihood ratio is then (1 - q) x LR + q (a wrong region is taken to
# look like a site without residual disease).
ZONE_IDENTITY_UNCERTAIN = Figure.from_value(
    0.15, 8, "Assumption: zone found without a confirming registration may not be the treated site",
    assumption=True)

# --- Decision thresholds ---------------------------------------------------------------------
# "High" probability: a peripheral biopsy is recommended whatever the other rules say. A product
# decision (assumption), set just above the ~14 % left by a negative MRI at Z1072's prevalence.
BIOPSY_PROBABILITY_THRESHOLD = 0.15
# Monte Carlo draws for the probability interval (fixed seed: the same inputs give the same report).
INTERVAL_DRAWS = 4000
INTERVAL_LEVEL = 0.95
