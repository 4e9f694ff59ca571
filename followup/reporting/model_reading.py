"""``report.json``'s radiologist's reading of a finding: its ACR BI-RADS MRI lexicon descriptors
(:mod:`followup.pipelines.segmentation.lexicon`). Part of the typed report model
(:mod:`followup.reporting.model`), kept apart so the model stays one screenful per concern."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class LexiconRow(_Model):
    """A finding in the lexicon's words: focus (< 5 mm) or mass; a mass's shape, margin and
    internal enhancement (null where the voxels were too coarse to read it: ``not_read`` says
    why); the curve's initial and delayed phases; ``phrase`` the whole as one sentence."""

    finding: Literal["focus", "mass"]
    shape: Literal["oval", "round", "irregular"] | None
    margin: Literal["circumscribed", "irregular", "spiculated"] | None
    internal_enhancement: Literal["homogeneous", "heterogeneous", "rim enhancement"] | None
    initial_phase: str
    delayed_phase: str
    suspicious_morphology: bool
    phrase: str
    not_read: tuple[str, ...] = ()
    figures: dict[str, float] = {}


__all__ = ["LexiconRow"]
