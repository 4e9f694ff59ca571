"""A finding's ACR BI-RADS MRI lexicon as coded SR content: one Qualitative Evaluation per
descriptor that was read (TID 1411's evaluations), for the SR's finding groups
(:mod:`followup.reporting.sr`). The delayed phase is the curve type, coded there already."""

from __future__ import annotations

from highdicom.sr import QualitativeEvaluation

from followup.reporting import codes
from followup.reporting.model_reading import LexiconRow


def lexicon_evaluations(x: LexiconRow | None) -> list[QualitativeEvaluation]:
    if x is None:
        return []
    out = [QualitativeEvaluation(codes.FINDING_TYPE, codes.FINDING_TYPE_VALUES[x.finding])]
    if x.shape:
        out.append(QualitativeEvaluation(codes.SHAPE, codes.SHAPE_VALUES[x.shape]))
    if x.margin:
        out.append(QualitativeEvaluation(codes.MARGIN, codes.MARGIN_VALUES[x.margin]))
    if x.internal_enhancement:
        out.append(QualitativeEvaluation(codes.INTERNAL_ENHANCEMENT,
                                         codes.INTERNAL_ENHANCEMENT_VALUES[x.internal_enhancement]))
    if x.initial_phase in codes.INITIAL_PHASE_VALUES:
        out.append(QualitativeEvaluation(codes.INITIAL_PHASE, codes.INITIAL_PHASE_VALUES[x.initial_phase]))
    return out


__all__ = ["lexicon_evaluations"]
