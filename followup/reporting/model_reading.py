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


class LocationRow(_Model):
    """Where a finding lies as a radiologist says it (:mod:`followup.pipelines.breast_location`):
    laterality, clock face (12 superior, 3 toward the patient's left, for both breasts; no hour
    within 10 mm of the nipple's axis: "subareolar" or "central"), straight-line distance from the
    nipple, depth (third of the nipple-to-chest-wall distance) and quadrant; ``text`` the whole."""

    laterality: Literal["left", "right"]
    clock_face: str
    clock_hour: int | None
    distance_from_nipple_mm: float
    depth: Literal["anterior", "middle", "posterior", "unknown"]
    quadrant: str
    text: str


class BreastTissueRow(_Model):
    """One breast's ACR BI-RADS MRI composition (amount of fibroglandular tissue, a-d) and
    background parenchymal enhancement, with the shares they were read from."""

    side: Literal["left", "right"]
    treated: bool
    composition: Literal["a", "b", "c", "d"]
    fibroglandular_share: float
    bpe: Literal["minimal", "mild", "moderate", "marked"]
    enhancing_share: float


class BreastRow(_Model):
    """The follow-up's nipple (the origin of every clock face), chest wall, and each breast's
    composition and background enhancement; what could not be read says why."""

    nipple_found: bool
    nipple_lps_mm: tuple[float, float, float] | None
    nipple_problem: str | None
    chest_wall_found: bool
    tissue: tuple[BreastTissueRow, ...]
    tissue_problem: str | None
    marked_bpe: bool

    @property
    def treated(self) -> BreastTissueRow | None:
        """The treated breast's composition and BPE (None: not read)."""
        return next((t for t in self.tissue if t.treated), None)


class NmeRow(_Model):
    """Non-mass enhancement at or extending from the ablation site (ACR BI-RADS MRI lexicon):
    distribution and internal pattern, extent, kinetics, location (its centre), whether it is
    suspicious or a recognised benign look-alike, and why."""

    distribution: Literal["focal", "linear", "segmental", "regional"]
    internal_enhancement: Literal["homogeneous", "heterogeneous", "clumped", "clustered-ring"]
    extent_mm: float
    width_mm: float
    start_lps_mm: tuple[float, float, float]  # the end nearer the zone
    end_lps_mm: tuple[float, float, float]
    center_lps_mm: tuple[float, float, float]
    distance_to_zone_edge_mm: float
    initial_enhancement_pct: float
    initial_phase: str
    delayed_phase: str  # persistent | plateau | washout | not assessable
    delayed_change_pct: float
    look_alike: str | None  # probe-track | thick-rim | background-enhancement; null: none recognised
    suspicious: bool
    why: tuple[str, ...]
    location: LocationRow | None = None  # of its centre
    start_location: LocationRow | None = None  # of its end nearer the zone
    end_location: LocationRow | None = None
    phrase: str = ""  # e.g. "Segmental clumped non-mass enhancement, 24 mm; initial fast, delayed plateau"
    # focal or regional and enhancing at the same place on the pre-procedure MRI: background
    present_before: bool = False
