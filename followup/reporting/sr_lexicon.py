"""A finding's ACR BI-RADS MRI lexicon as coded SR content: one Qualitative Evaluation per
descriptor that was read (TID 1411's evaluations), for the SR's finding groups
(:mod:`followup.reporting.sr`). The delayed phase is the curve type, coded there already."""

from __future__ import annotations

from highdicom.sr import QualitativeEvaluation

from followup.reporting.model_reading import LexiconRow
from followup.reporting.reading_codes import lexicon_pairs


def lexicon_evaluations(x: LexiconRow | None) -> list[QualitativeEvaluation]:
    return [QualitativeEvaluation(name, value) for name, value in lexicon_pairs(x)]


__all__ = ["lexicon_evaluations"]
