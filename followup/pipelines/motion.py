"""Within-study motion: realign each post-contrast phase to the pre-contrast phase before
subtraction, inside the box that the analysis reads.

A rigid transform per phase is estimated by mutual information (contrast changes intensities, so
not by differences); a phase that moved by more than ``REALIGN_ABOVE_MM`` at the lesion is
resampled onto the pre-contrast grid, the others are only cropped. Pure: volumes in, arrays out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from followup.pipelines.register import rigid_in_box
from followup.pipelines.roi import box_indices, crop, resample
from followup.volume import Volume

REALIGN_ABOVE_MM = 0.5
MOTION_LEVEL = (2.0, 40, 6000)
MOTION_HALF_BOX_MM = 40.0


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
    pre = phases[0]
    box = box_indices(pre, centre_lps, half_box_mm)
    grid = crop(pre, box)
    out = [grid.data]
    alignments = [PhaseAlignment(0, 0.0, False)]
    c = np.asarray(centre_lps, dtype=float)
    for n, post in enumerate(phases[1:], start=1):
        fit = rigid_in_box(pre, post, c, MOTION_HALF_BOX_MM, MOTION_LEVEL)
        matrix = np.eye(4) if fit is None else fit[0]
        shift = float(np.linalg.norm(matrix[:3, :3] @ c + matrix[:3, 3] - c))
        if shift > REALIGN_ABOVE_MM:
            out.append(resample(post, grid.shape, grid.affine, matrix, order=3))
            alignments.append(PhaseAlignment(n, shift, True))
        else:
            out.append(np.ascontiguousarray(post.data[box], dtype=np.float32))
            alignments.append(PhaseAlignment(n, shift, False))
    return AlignedRoi(out, grid, alignments)
