"""Within-study motion: realign each post-contrast phase to the pre-contrast phase before
subtraction, inside the box that the analysis reads.

A rigid transform per phase is estimated by mutual information (contrast changes intensities, so
not by differences); a phase that moved by more than ``REALIGN_ABOVE_MM`` at the lesion is
resampled onto the pre-contrast grid, the others are only cropped. Pure: volumes in, arrays out.

The phases are aligned as one batch (``rigid_in_box_batch``: the same result per phase as one
alignment each, with the pre-contrast phase prepared once), and a realigned phase is resampled
from a crop around the box, not from the whole volume.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from followup.pipelines.registration.box import rigid_in_box_batch
from followup.pipelines.registration.sampling import prepare
from followup.pipelines.roi import box_indices, crop, resample
from followup.volume import Volume

REALIGN_ABOVE_MM = 0.5
MOTION_LEVEL = (2.0, 40, 6000)
MOTION_HALF_BOX_MM = 40.0
# A realigned phase is resampled from a crop of the box widened by the largest displacement of the
# box's corners plus this reach of the cubic spline (its prefilter decays by ~0.27 a voxel, so
# 10 mm leaves the values of a whole-volume resampling unchanged to float precision).
RESAMPLE_REACH_MM = 10.0


@dataclass(frozen=True)
class PhaseAlignment:
    index: int
    shift_mm: float  # displacement of the lesion centre against the pre-contrast phase
    realigned: bool

    def to_json(self) -> dict:
        return {"phase": self.index, "shift_mm": round(self.shift_mm, 2), "realigned": self.realigned}


@dataclass(frozen=True)
class AlignedRoi:
    phases: list[np.ndarray]  # pre-contrast first, all on ``grid``'s voxels
    grid: Volume  # the pre-contrast phase cropped to the box (its data is phases[0])
    alignments: list[PhaseAlignment]


def realign_phases(phases: list[Volume], centre_lps: np.ndarray, half_box_mm: float) -> AlignedRoi:
    """Crop every phase to the analysis box, realigning the phases that moved."""
    pre = phases[0]
    box = box_indices(pre, centre_lps, half_box_mm)
    grid = crop(pre, box)
    out = [grid.data]
    alignments = [PhaseAlignment(0, 0.0, False)]
    c = np.asarray(centre_lps, dtype=float)
    posts = phases[1:]
    fits = None
    if posts:
        fits = rigid_in_box_batch(prepare(pre), [prepare(p) for p in posts], c,
                                  MOTION_HALF_BOX_MM, MOTION_LEVEL)
    for n, post in enumerate(posts, start=1):
        matrix = np.eye(4) if fits is None else fits[n - 1][0]
        shift = float(np.linalg.norm(matrix[:3, :3] @ c + matrix[:3, 3] - c))
        if shift > REALIGN_ABOVE_MM:
            corners = grid.voxel_to_world(np.array(
                [[a, b, d] for a in (0, grid.shape[0] - 1) for b in (0, grid.shape[1] - 1)
                 for d in (0, grid.shape[2] - 1)], dtype=float))
            moved = float(np.max(np.linalg.norm(corners @ matrix[:3, :3].T + matrix[:3, 3] - corners,
                                                axis=1)))
            source = crop(post, box_indices(post, c, half_box_mm + moved + RESAMPLE_REACH_MM))
            out.append(resample(source, grid.shape, grid.affine, matrix, order=3))
            alignments.append(PhaseAlignment(n, shift, True))
        else:
            out.append(np.ascontiguousarray(post.data[box], dtype=np.float32))
            alignments.append(PhaseAlignment(n, shift, False))
    return AlignedRoi(out, grid, alignments)
