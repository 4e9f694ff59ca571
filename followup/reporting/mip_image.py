"""The maximum-intensity projection (MIP) of the first subtraction of the treated breast, with the
findings marked: the picture a breast radiologist looks at first (issue 24, item 7).

Pure rendering: arrays + 4x4 voxel->LPS affine + LPS points in, an array view and PNG bytes out.

* The projection follows the acquisition: along S-I for an axial acquisition (the usual axial
  MIP), along L-R for a sagittal one, along A-P for a coronal one (:func:`acquisition_plane`).
* Shown as radiologists view it: axial and coronal with the patient's right on the image's left
  (radiological convention), anterior (axial) or superior (coronal, sagittal) at the top;
  sagittal with anterior on the left. Orientation letters sit at the edges' midpoints.
* Only the treated breast: for a bilateral field (wider than :data:`BILATERAL_MIN_WIDTH_MM` in L-R
  and not labelled as one breast) the half of the field on the treated side of the field's centre
  is projected (axial, coronal: the shown columns; sagittal: the projected slices), and of it
  the breasts' part, the anterior half (:func:`anterior_range`). A one-breast field (a sagittal
  acquisition's, usually) is kept whole.
* Findings: each suspicious focus a numbered red ring, the ablation zone its projected outline
  (green; a cross at its centre when no mask is given), the nipple a yellow "N" when known.

The volume is first put in LPS-aligned voxel order (:func:`~followup.reporting.picture.lps_aligned`);
for an oblique acquisition this projects along the voxel axis nearest S-I (or L-R, A-P): an
approximation, labelled as one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
from matplotlib.patches import Circle

from followup.reporting.picture import (
    DISPLAY_AXES,
    TEXT_EDGE,
    DisplayPlane,
    Plane,
    acquisition_plane,
    display_mm,
    display_plane,
    draw_edge_labels,
    figure_rgb,
    lps_aligned,
    picture_figure,
    picture_png,
)
from followup.volume import Volume

# Assumption (no cited figure): one breast's field is narrower than 250 mm in L-R; a bilateral
# axial or coronal field is 300-400 mm wide (the synthetic studies: 320 mm).
BILATERAL_MIN_WIDTH_MM = 250.0
# Kept beyond the midline so that a finding near it stays in the picture (assumption).
MIDLINE_SLACK_MM = 20.0
# Assumption (prone breast MRI): the breasts lie in the anterior half of a bilateral field; the heart,
# whose enhancement would take the MIP's window, behind it. Kept: the anterior half, or down to
# this far behind the deepest finding when that is deeper.
BEHIND_DEEPEST_FINDING_MM = 30.0
OUT_PX_PER_MM = 3.0  # rendering scale of the MIP (a 160 x 160 mm half field: 480 x 480 px)
WINDOW_PERCENTILE = 99.7  # the display's white level, of the projected breast

FOCUS_COLOUR = "#ff3030"
ZONE_COLOUR = "#7CFC00"
NIPPLE_COLOUR = "#ffd700"
LABEL_COLOUR = "#ffffff"


class MarkKind(StrEnum):
    FOCUS = "focus"
    ZONE = "zone"
    NIPPLE = "nipple"


NORMAL_AXIS = {Plane.SAGITTAL: 0, Plane.CORONAL: 1, Plane.AXIAL: 2}  # the LPS axis projected along


@dataclass(frozen=True)
class Mark:
    """A finding to mark: where (LPS mm), its label ("1", "zone", "N") and what it is."""

    lps: tuple[float, float, float]
    label: str
    kind: MarkKind
    radius_mm: float = 5.0  # the ring's radius (a focus: its half diameter, at least 4 mm)


@dataclass(frozen=True)
class PlacedMark:
    mark: Mark
    x_mm: float  # from the image's left edge
    y_mm: float  # from the image's top edge


@dataclass(frozen=True)
class MipView:
    picture: DisplayPlane
    marks: tuple[PlacedMark, ...]
    outline: np.ndarray | None  # bool (rows, cols): the zone's projected silhouette
    side: str  # which part of the field was projected, in words


def bilateral(vol: Volume, study_laterality: str | None) -> bool:
    """Both breasts in the field: not labelled as one breast, and at least
    :data:`BILATERAL_MIN_WIDTH_MM` wide in L-R (axis 0 of an LPS-aligned volume)."""
    one = (study_laterality or "").upper() in ("L", "R")
    return not one and vol.shape[0] * float(vol.spacing[0]) >= BILATERAL_MIN_WIDTH_MM


def treated_range(vol: Volume, laterality: str, study_laterality: str | None,
                  points_lps: Sequence[Sequence[float]] = ()) -> tuple[slice, str]:
    """The index range along axis 0 (L-R) of an LPS-aligned volume that holds the treated breast,
    and in words. A field labelled as one breast (``study_laterality`` "L" or "R") or narrower than
    :data:`BILATERAL_MIN_WIDTH_MM` is kept whole; a bilateral one is cut at its centre, the cut
    moved out so that every finding stays :data:`MIDLINE_SLACK_MM` inside."""
    n = vol.shape[0]
    if not bilateral(vol, study_laterality):
        return slice(0, n), "the whole field (one breast)"
    x0, dx = float(vol.affine[0, 3]), float(vol.spacing[0])
    mid = x0 + dx * (n - 1) / 2.0
    xs = [float(p[0]) for p in points_lps]
    if laterality == "L":  # the patient's left: +x
        cut = min([mid, *[x - MIDLINE_SLACK_MM for x in xs]])
        lo = int(np.clip(np.floor((cut - x0) / dx), 0, n - 1))
        return slice(lo, n), "the left half of the field"
    cut = max([mid, *[x + MIDLINE_SLACK_MM for x in xs]])
    hi = int(np.clip(np.ceil((cut - x0) / dx) + 1, 1, n))
    return slice(0, hi), "the right half of the field"


def anterior_range(vol: Volume, points_lps: Sequence[Sequence[float]] = ()) -> slice:
    """The index range along axis 1 (A-P) of an LPS-aligned volume kept for the breast: from the
    anterior edge to the field's centre, or :data:`BEHIND_DEEPEST_FINDING_MM` behind the deepest
    finding when that is deeper (assumption: see the constant)."""
    n = vol.shape[1]
    y0, dy = float(vol.affine[1, 3]), float(vol.spacing[1])
    cut = max([y0 + dy * (n - 1) / 2.0, *[float(p[1]) + BEHIND_DEEPEST_FINDING_MM for p in points_lps]])
    return slice(0, int(np.clip(np.ceil((cut - y0) / dy) + 1, 1, n)))


def _sub_volume(vol: Volume, xs: slice, ys: slice) -> Volume:
    aff = vol.affine.copy()
    aff[:3, 3] = vol.affine[:3, :3] @ np.array([xs.start, ys.start, 0], float) + vol.affine[:3, 3]
    return Volume(vol.data[xs, ys], aff)


def _silhouette(vol: Volume, plane: Plane, mask: np.ndarray, mask_affine: np.ndarray) -> np.ndarray:
    """The projection of a mask (on its own grid) onto the display of ``plane``: bool (rows, cols)."""
    col_axis, row_axis, flip_rows = DISPLAY_AXES[plane]
    ijk = np.argwhere(mask).astype(float)
    lps = ijk @ np.asarray(mask_affine, float)[:3, :3].T + np.asarray(mask_affine, float)[:3, 3]
    vox = np.rint(vol.world_to_voxel(lps)).astype(int)
    cols, rows = vox[:, col_axis], vox[:, row_axis]
    n_rows, n_cols = vol.shape[row_axis], vol.shape[col_axis]
    if flip_rows:
        rows = n_rows - 1 - rows
    ok = (cols >= 0) & (cols < n_cols) & (rows >= 0) & (rows < n_rows)
    out = np.zeros((n_rows, n_cols), bool)
    out[rows[ok], cols[ok]] = True
    return out


def mip_view(pre: np.ndarray, post: np.ndarray, affine: np.ndarray, laterality: str,
             marks: Sequence[Mark] = (), zone_mask: np.ndarray | None = None,
             zone_affine: np.ndarray | None = None, study_laterality: str | None = None) -> MipView:
    """The MIP of ``post - pre`` (negative values as 0) of the treated breast (``laterality`` "L"
    or "R", from the procedure record), the marks placed on it, the zone's silhouette when its
    mask (bool, on the grid ``zone_affine``) is given."""
    plane = acquisition_plane(affine)
    sub = lps_aligned(np.clip(np.asarray(post, np.float32) - np.asarray(pre, np.float32), 0, None), affine)
    points = [m.lps for m in marks]
    xs, side = treated_range(sub, laterality, study_laterality, points)
    ys = anterior_range(sub, points) if bilateral(sub, study_laterality) else slice(0, sub.shape[1])
    half = _sub_volume(sub, xs, ys)
    mip = half.data.max(axis=NORMAL_AXIS[plane])
    picture = display_plane(mip, half.spacing, plane)
    placed = display_mm(half, plane, np.array([m.lps for m in marks], float).reshape(-1, 3))
    outline = None
    if zone_mask is not None and zone_affine is not None and np.any(zone_mask):
        outline = _silhouette(half, plane, zone_mask, zone_affine)
    return MipView(picture, tuple(PlacedMark(m, float(p[0]), float(p[1])) for m, p in zip(marks, placed, strict=True)),
                   outline, side)


def mip_figure(view: MipView):
    """The MIP on a figure the size of its picture at :data:`OUT_PX_PER_MM` (axes fill it: data
    mm map linearly to output pixels), findings and orientation letters drawn on it."""
    fig, ax = picture_figure(view.picture, OUT_PX_PER_MM, WINDOW_PERCENTILE)
    w, h = view.picture.size_mm
    if view.outline is not None and view.outline.any():
        sr, sc = view.picture.spacing_mm
        xs = (np.arange(view.outline.shape[1]) + 0.5) * sc
        ys = (np.arange(view.outline.shape[0]) + 0.5) * sr
        ax.contour(xs, ys, view.outline.astype(float), levels=[0.5], colors=ZONE_COLOUR, linewidths=1.4)
    for p in view.marks:
        m = p.mark
        if m.kind == MarkKind.FOCUS:
            r = max(m.radius_mm, 4.0) + 2.0
            ax.add_patch(_ring(p.x_mm, p.y_mm, r, FOCUS_COLOUR))
            ax.text(p.x_mm + r * 0.8, p.y_mm - r * 0.8, m.label, color=FOCUS_COLOUR, fontsize=12,
                    fontweight="bold", ha="left", va="bottom", path_effects=TEXT_EDGE)
        elif m.kind == MarkKind.ZONE and view.outline is None:
            ax.plot([p.x_mm], [p.y_mm], marker="+", markersize=14, mew=2, color=ZONE_COLOUR)
        elif m.kind == MarkKind.NIPPLE:
            ax.text(p.x_mm, p.y_mm, "N", color=NIPPLE_COLOUR, fontsize=11, fontweight="bold",
                    ha="center", va="center", path_effects=TEXT_EDGE)
    draw_edge_labels(ax, view.picture, LABEL_COLOUR)
    ax.text(0.015 * w, 0.015 * h, f"MIP 1st subtraction\n{view.picture.plane}", color=LABEL_COLOUR,
            fontsize=8, ha="left", va="top", path_effects=TEXT_EDGE)
    return fig


def _ring(x: float, y: float, r: float, colour: str) -> Circle:
    return Circle((x, y), r, fill=False, edgecolor=colour, linewidth=1.8)


def mip_rgb(view: MipView) -> np.ndarray:
    """The rendered MIP as an (H, W, 3) uint8 array (what the PNG holds)."""
    return figure_rgb(mip_figure(view))


def mip_png(view: MipView) -> bytes:
    return picture_png(mip_figure(view))


__all__ = ["BILATERAL_MIN_WIDTH_MM", "NORMAL_AXIS", "Mark", "MarkKind", "MipView", "PlacedMark",
           "anterior_range", "bilateral", "mip_png", "mip_rgb", "mip_view", "treated_range"]
