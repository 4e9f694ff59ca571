"""The registration's result: the follow-up -> baseline matrices, the similarities and the
quality label with its reasons and figures."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np


class Quality(StrEnum):
    """Whether a registration is trusted (``good``) or failed the quality rule (``poor``)."""

    GOOD = "good"
    POOR = "poor"


@dataclass(frozen=True)
class RegistrationResult:
    matrix: np.ndarray  # 4x4 follow-up LPS -> baseline LPS (global affine)
    local_matrix: np.ndarray  # 4x4 follow-up LPS -> baseline LPS, refined around the lesion
    method: str
    mi_before: float
    mi_after: float
    ncc_local_before: float
    ncc_local_after: float
    quality: Quality
    reasons: list[str] = field(default_factory=list)
    # the numbers the quality rule reads (see quality_reasons()); NaN -> null in to_json()
    figures: dict[str, float] = field(default_factory=dict)

    def baseline_to_followup(self, lps: np.ndarray) -> np.ndarray:
        inv = np.linalg.inv(self.local_matrix)
        pts = np.atleast_2d(np.asarray(lps, dtype=float))
        return pts @ inv[:3, :3].T + inv[:3, 3]

    def to_json(self) -> dict:
        return {
            "method": self.method,
            "similarity_before": {"mutual_information": round(self.mi_before, 4),
                                  "local_ncc": round(self.ncc_local_before, 4)},
            "similarity_after": {"mutual_information": round(self.mi_after, 4),
                                 "local_ncc": round(self.ncc_local_after, 4)},
            "quality": str(self.quality),
            "quality_reasons": list(self.reasons),
            "quality_figures": {k: (round(float(v), 4) if math.isfinite(float(v)) else None)
                                for k, v in self.figures.items()},
            "followup_to_baseline_affine": np.round(self.local_matrix, 6).tolist(),
        }
