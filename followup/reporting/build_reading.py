"""The radiologist's reading of the report model (:mod:`followup.reporting.model_reading`) from the
analysis: each finding's lexicon and location, the breast's nipple, composition and background
enhancement. Part of :mod:`followup.reporting.build`."""

from __future__ import annotations

from typing import Any, cast

import numpy as np

from followup.pipelines.breast_location import BreastLocation
from followup.pipelines.breast_read import BreastRead
from followup.pipelines.segmentation.lexicon import Lexicon
from followup.pipelines.segmentation.model import NonMassEnhancement
from followup.reporting.model_reading import BreastRow, BreastTissueRow, LexiconRow, LocationRow, NmeRow
from followup.reporting.rounding import rounded, rounded_list


def lexicon_row(x: Lexicon | None) -> LexiconRow | None:
    if x is None:
        return None
    return LexiconRow(
        finding=x.finding.value, shape=x.shape.value if x.shape else None,
        margin=x.margin.value if x.margin else None,
        internal_enhancement=x.internal.value if x.internal else None,
        initial_phase=x.initial_phase, delayed_phase=x.delayed_phase,
        suspicious_morphology=bool(x.suspicious_morphology), phrase=x.phrase(), not_read=x.not_read,
        figures={k: float(v) for k, v in x.figures.items()})


def location_row(loc: BreastLocation | None) -> LocationRow | None:
    if loc is None:
        return None
    return LocationRow(laterality=cast(Any, loc.laterality), clock_face=loc.clock_face, clock_hour=loc.clock_hour,
                       distance_from_nipple_mm=rounded(loc.distance_from_nipple_mm, 0),
                       depth=cast(Any, loc.depth.value), quadrant=loc.quadrant.value, text=loc.text)


def locate(breast: BreastRead | None, point_lps: np.ndarray) -> LocationRow | None:
    return None if breast is None else location_row(breast.locate(point_lps))


def breast_row(b: BreastRead | None) -> BreastRow | None:
    if b is None:
        return None
    tissue = () if b.tissue is None else tuple(
        BreastTissueRow(side=cast(Any, t.side), treated=bool(t.treated), composition=cast(Any, t.composition.value),
                        fibroglandular_share=rounded(t.fibroglandular_share, 2), bpe=cast(Any, t.bpe.value),
                        enhancing_share=rounded(t.enhancing_share, 2))
        for t in b.tissue.breasts)
    nipple = b.nipple.position_lps
    return BreastRow(
        nipple_found=bool(b.nipple.found),
        nipple_lps_mm=None if nipple is None else cast(Any, tuple(rounded_list(nipple, 1))),
        nipple_problem=b.nipple.reason, chest_wall_found=bool(b.chest_wall is not None and b.chest_wall.found),
        tissue=tissue, tissue_problem=b.tissue_problem if b.tissue is None else
        ("; ".join(b.tissue.reasons) or None), marked_bpe=bool(b.marked_bpe))




def nme_row(m: NonMassEnhancement, breast: BreastRead | None) -> NmeRow:
    delayed = m.curve_type if m.kinetics_reliable else "not assessable"
    phrase = (f"{m.distribution.value.capitalize()} {m.internal.value} non-mass enhancement, "
              f"{m.extent_mm:.0f} mm; initial {m.initial_phase}, delayed {delayed}")
    return NmeRow(
        distribution=cast(Any, m.distribution.value), internal_enhancement=cast(Any, m.internal.value),
        extent_mm=rounded(m.extent_mm, 1), width_mm=rounded(m.width_mm, 1),
        start_lps_mm=cast(Any, tuple(rounded_list(m.start_lps, 1))),
        end_lps_mm=cast(Any, tuple(rounded_list(m.end_lps, 1))),
        center_lps_mm=cast(Any, tuple(rounded_list(m.centre_lps, 1))),
        distance_to_zone_edge_mm=rounded(m.distance_to_zone_edge_mm, 1),
        initial_enhancement_pct=rounded(m.initial_pe, 1), initial_phase=m.initial_phase, delayed_phase=delayed,
        delayed_change_pct=rounded(m.delayed_change_pct, 1),
        look_alike=None if m.mimic is None else m.mimic.value, suspicious=bool(m.suspicious), why=tuple(m.reasons),
        location=locate(breast, m.centre_lps), start_location=locate(breast, m.start_lps),
        end_location=locate(breast, m.end_lps), phrase=phrase, present_before=bool(m.present_before))


__all__ = ["breast_row", "lexicon_row", "locate", "location_row", "nme_row"]
