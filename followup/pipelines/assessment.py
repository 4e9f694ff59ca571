"""The finished analysis of one follow-up: :class:`Assessment`, one frozen value.

Data only (no analysis here): :mod:`followup.pipelines.assess` makes it, and
:mod:`followup.pipelines.surveillance` makes a new one from it with the earlier follow-ups compared
(``dataclasses.replace``); neither changes a value once it is built. Choices are enums: the
status, the registration quality (:class:`~followup.pipelines.registration.result.Quality`), a focus's curve
(:class:`~followup.pipelines.enhancement.CurveType`), the confidence and the question
(:mod:`followup.pipelines.probability`), the BI-RADS category (:mod:`followup.pipelines.birads`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from followup.dicom.study import DCEStudy
from followup.pipelines.birads import BiradsAssessment
from followup.pipelines.breast_read import BreastRead
from followup.pipelines.enhancement import EnhancementMaps
from followup.pipelines.enhancement_before import EnhancementBefore
from followup.pipelines.longitudinal import Longitudinal, TimePointMeasure
from followup.pipelines.motion import AlignedRoi
from followup.pipelines.probability import ProbabilityResult
from followup.pipelines.registration.result import Quality, RegistrationResult
from followup.pipelines.segmentation.model import Focus, Segmentation
from followup.pipelines.zone_search import ZoneSearch


class Status(StrEnum):
    COMPLETE = "complete"
    DEFERRED = "deferred"
    FAILED = "failed"


@dataclass(frozen=True)
class Note:
    code: str
    text: str


@dataclass(frozen=True)
class PriorRead:
    """One earlier follow-up: its own assessment and how it maps into the current follow-up."""

    study: DCEStudy
    assessment: Assessment
    measure: TimePointMeasure
    registration: RegistrationResult | None  # prior -> current, direct
    current_to_prior: np.ndarray | None  # 4 x 4, current LPS -> prior LPS (the mapping used)


@dataclass(frozen=True)
class LongitudinalRead:
    summary: Longitudinal
    priors: tuple[PriorRead, ...]  # by date

    @property
    def previous(self) -> PriorRead | None:
        """The latest earlier follow-up that was measured and maps into the current one."""
        for p in reversed(self.priors):
            if p.measure.measured and p.current_to_prior is not None:
                return p
        return None


@dataclass(frozen=True)
class Assessment:
    status: Status
    reason: str | None
    days_since_procedure: int | None
    analysable_from: dt.date | None = None
    probability: ProbabilityResult | None = None
    birads: BiradsAssessment | None = None
    registration: RegistrationResult | None = None
    tumour_center_followup: np.ndarray | None = None
    roi: AlignedRoi | None = None
    maps: EnhancementMaps | None = None
    segmentation: Segmentation | None = None
    zone_search: ZoneSearch | None = None  # the ablation zone as found in the follow-up itself
    # earlier follow-ups compared (issue 14; followup.pipelines.surveillance), None without priors
    longitudinal: LongitudinalRead | None = None
    caveats: tuple[Note, ...] = ()
    recommendations: tuple[Note, ...] = ()
    # the procedure lies outside the indication or the technique (the report's banner)
    contraindications: tuple[Note, ...] = ()
    warnings: tuple[str, ...] = ()
    # the nipple, chest wall, composition and BPE of the follow-up (issue 24); None: not read
    breast: BreastRead | None = None
    # the baseline's enhancement on the analysis grid (None: registration not good or one baseline phase)
    enhancement_before: EnhancementBefore | None = None

    @property
    def zone_found(self) -> bool:
        return self.zone_search is not None and self.zone_search.found

    @property
    def registration_poor(self) -> bool:
        return self.registration is not None and self.registration.quality == Quality.POOR

    @property
    def suspicious_foci(self) -> list[Focus]:
        return [f for f in (self.segmentation.foci if self.segmentation else []) if f.suspicious]


__all__ = ["Assessment", "LongitudinalRead", "Note", "PriorRead", "Status"]
