"""The treated breast as a radiologist reads it around the finding: its nipple and chest wall (to
give every finding's clock face, distance from the nipple and depth), and the composition and
background parenchymal enhancement of each breast in the field (ACR BI-RADS MRI).

Pure: the follow-up's whole pre-contrast and first post-contrast volumes (arrays and affines) in,
one frozen :class:`BreastRead` out (:mod:`followup.pipelines.breast_location`,
:mod:`followup.pipelines.breast_tissue`). Each part that cannot be read says why and is left out;
nothing is guessed: without the nipple no finding gets a clock face.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from followup.dicom.study import DCEStudy
from followup.pipelines.breast_location import (
    BreastLocation,
    ChestWall,
    NippleFind,
    find_chest_wall,
    find_nipple,
    locate,
)
from followup.pipelines.breast_tissue import TissueRead, assess_tissue
from followup.pipelines.roi import resample

# The ablation zone and its surroundings are left out of the composition and BPE (the treated
# site is not background): a sphere this far beyond the zone's largest radius.
ZONE_EXCLUSION_MARGIN_MM = 10.0


@dataclass(frozen=True)
class BreastRead:
    laterality: str  # the treated side, "L" | "R"
    nipple: NippleFind
    chest_wall: ChestWall | None  # None: no nipple to stand behind
    tissue: TissueRead | None
    tissue_problem: str | None = None  # why composition and BPE were not read

    def locate(self, point_lps: np.ndarray) -> BreastLocation | None:
        """A point's clock face, distance from the nipple and depth; None without the nipple."""
        if not self.nipple.found or self.nipple.position_lps is None:
            return None
        wall = self.chest_wall.y_lps if self.chest_wall is not None and self.chest_wall.found else None
        return locate(np.asarray(point_lps, float), self.nipple.position_lps, self.laterality, wall)

    def location_text(self, point_lps: np.ndarray) -> str | None:
        """A point's location in words, e.g. "left breast, 2 o'clock, 45 mm from the nipple,
        middle third"; None without the nipple."""
        loc = self.locate(point_lps)
        return None if loc is None else loc.text

    @property
    def marked_bpe(self) -> bool:
        """The treated breast's background enhancement is marked: a finding is harder to see."""
        return self.tissue is not None and self.tissue.confidence_lowering


def read_breast(pre: np.ndarray, first_post: np.ndarray, affine: np.ndarray, laterality: str,
                fat_suppressed: bool | None, zone_centre_lps: np.ndarray | None,
                zone_radius_mm: float) -> BreastRead:
    """Nipple, chest wall, composition and BPE of the follow-up (see the module)."""
    nipple = find_nipple(pre, affine, laterality)
    wall = find_chest_wall(pre, affine, nipple.position_lps) if nipple.found and nipple.position_lps is not None \
        else None
    tissue = assess_tissue(pre, first_post, affine, fat_suppressed, laterality,
                           exclude_centre_lps=None if zone_centre_lps is None else np.asarray(zone_centre_lps, float),
                           exclude_radius_mm=zone_radius_mm + ZONE_EXCLUSION_MARGIN_MM)
    if not tissue.breasts:
        return BreastRead(laterality, nipple, wall, None, "; ".join(tissue.reasons) or "no breast read")
    return BreastRead(laterality, nipple, wall, tissue)




def read_followup_breast(followup: DCEStudy, laterality: str, fat_suppressed: bool | None,
                         zone_centre_lps: np.ndarray | None, zone_radius_mm: float) -> BreastRead:
    """:func:`read_breast` on the follow-up's pre-contrast and first post-contrast phases."""
    pre, post = followup.phases[0].volume, followup.phases[1].volume
    first_post = post.data if post.shape == pre.shape and np.allclose(post.affine, pre.affine) \
        else resample(post, pre.shape, pre.affine, np.eye(4), order=1)
    return read_breast(pre.data, first_post, pre.affine, laterality, fat_suppressed, zone_centre_lps,
                       zone_radius_mm)


__all__ = ["ZONE_EXCLUSION_MARGIN_MM", "BreastRead", "read_breast", "read_followup_breast"]
