"""The ACR BI-RADS MRI assessment category (5th ed., 2013) of one follow-up, with its management.

Pure: the analysis's status, probability and findings in, a :class:`BiradsAssessment` out.

* 0 (incomplete): the study could not be assessed (deferred before 3 weeks, failed), or the
  imaging was not used and the probability alone would have been benign;
* 2 (benign): the benign post-treatment appearance (no suspicious enhancement at the site, benign
  rim pattern) *and* a probability of 2 % or less, with normal confidence;
* 3 (probably benign, short-interval follow-up): a probability of 2 % or less otherwise;
* 4A (> 2-10 %), 4B (> 10-50 %), 4C (> 50 to < 95 %), 5 (>= 95 %), each with tissue diagnosis;
  a suspicious finding at the site is 4A or higher whatever the probability.

No category below 4 above 2 % (``evidence.BIRADS_3_MAX``): the error falls on the side of a biopsy.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from followup import evidence as ev


class Category(StrEnum):
    INCOMPLETE = "0"
    BENIGN = "2"
    PROBABLY_BENIGN = "3"
    SUSPICIOUS_LOW = "4A"
    SUSPICIOUS_MODERATE = "4B"
    SUSPICIOUS_HIGH = "4C"
    HIGHLY_SUGGESTIVE = "5"

    @property
    def label(self) -> str:
        return _LABELS[self]

    @property
    def tissue_diagnosis(self) -> bool:
        return self in _TISSUE

    @property
    def reassuring(self) -> bool:
        """Whether a reader may take the category as reassuring (2 or 3): shown in a calm style."""
        return self in (Category.BENIGN, Category.PROBABLY_BENIGN)


_LABELS = {
    Category.INCOMPLETE: "Incomplete: needs additional imaging evaluation",
    Category.BENIGN: "Benign (post-treatment appearance)",
    Category.PROBABLY_BENIGN: "Probably benign",
    Category.SUSPICIOUS_LOW: "Suspicious, low suspicion for malignancy",
    Category.SUSPICIOUS_MODERATE: "Suspicious, moderate suspicion for malignancy",
    Category.SUSPICIOUS_HIGH: "Suspicious, high suspicion for malignancy",
    Category.HIGHLY_SUGGESTIVE: "Highly suggestive of malignancy",
}
_TISSUE = frozenset({Category.SUSPICIOUS_LOW, Category.SUSPICIOUS_MODERATE, Category.SUSPICIOUS_HIGH,
                     Category.HIGHLY_SUGGESTIVE})
_ORDER = list(Category)


@dataclass(frozen=True)
class BiradsAssessment:
    category: Category
    management: str
    criteria: str  # why this category (the rule that gave it)

    @property
    def label(self) -> str:
        return self.category.label


def band(probability: float) -> Category:
    """The category of a probability of disease at the site (ACR bands)."""
    if probability >= ev.BIRADS_5_MIN:
        return Category.HIGHLY_SUGGESTIVE
    if probability > ev.BIRADS_4B_MAX:
        return Category.SUSPICIOUS_HIGH
    if probability > ev.BIRADS_4A_MAX:
        return Category.SUSPICIOUS_MODERATE
    if probability > ev.BIRADS_3_MAX:
        return Category.SUSPICIOUS_LOW
    return Category.PROBABLY_BENIGN


def _at_least(c: Category, floor: Category) -> Category:
    return c if _ORDER.index(c) >= _ORDER.index(floor) else floor


TISSUE_DIAGNOSIS = "Tissue diagnosis: biopsy of the ablation site (targeted where a finding is seen, peripheral)."


def categorise(status: str, probability: float | None, *, imaging_used: bool, suspicious_at_site: bool,
               benign_appearance: bool, confidence_normal: bool, repeat_from: str | None = None) -> BiradsAssessment:
    """The category of one analysis (see the module)."""
    if status == "deferred":
        return BiradsAssessment(Category.INCOMPLETE, f"Repeat the MRI on or after {repeat_from} (>= 3 weeks "
                                "after the procedure).", "study taken before 3 weeks: not assessed")
    if status != "complete" or probability is None:
        return BiradsAssessment(Category.INCOMPLETE, "The radiologist reads the study; no automatic "
                                "assessment.", "analysis failed")
    c = band(probability)
    if suspicious_at_site:
        c = _at_least(c, Category.SUSPICIOUS_LOW)
        why = f"suspicious enhancement at the ablation site (probability {probability:.1%})"
    else:
        why = f"probability {probability:.1%} of disease at the site"
    if c is Category.PROBABLY_BENIGN:
        if not imaging_used:
            return BiradsAssessment(Category.INCOMPLETE, "The imaging could not be assessed automatically: "
                                    "the radiologist reads the study.", "imaging not used, " + why)
        if benign_appearance and confidence_normal:
            return BiradsAssessment(Category.BENIGN, "Continue routine post-ablation imaging surveillance.",
                                    why + " <= 2% with the benign post-treatment appearance (non-enhancing "
                                    "zone, thin smooth slowly enhancing rim, no suspicious enhancement)")
        return BiradsAssessment(Category.PROBABLY_BENIGN, "Short-interval follow-up MRI at about 6 months.",
                                why + " <= 2% (BI-RADS 3: likelihood of malignancy <= 2%)")
    return BiradsAssessment(c, TISSUE_DIAGNOSIS, why + f": BI-RADS {c.value} band")


__all__ = ["TISSUE_DIAGNOSIS", "BiradsAssessment", "Category", "band", "categorise"]
