"""A zoomed view of one finding (a suspicious focus, the ablation zone): the first subtraction on
the acquisition-plane slice through its centre, its outline, a 10 mm scale bar, orientation
letters, and a short caption (issue 24, item 7).

Pure rendering: arrays + 4x4 voxel->LPS affine + an LPS point in, a view and PNG bytes out. The
first subtraction (1st post-contrast minus pre-contrast) is where an early-enhancing finding shows
best. Shown as radiologists view it (:mod:`followup.reporting.picture`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from followup.reporting.mip_image import NORMAL_AXIS
from followup.reporting.picture import (
    DISPLAY_AXES,
    TEXT_EDGE,
    DisplayPlane,
    acquisition_plane,
    display_plane,
    draw_edge_labels,
    figure_rgb,
    lps_aligned,
    picture_figure,
    picture_png,
)

SCALE_BAR_MM = 10.0
ZOOM_WIDTH_PX = 360  # every zoomed view is this wide, whatever its field
WHITE_PERCENTILE = 99.5
BAR_COLOUR = "#ffffff"
CONTEXT_COLOUR = "#7CFC00"


@dataclass(frozen=True)
class ZoomView:
    picture: DisplayPlane
    outline: np.ndarray  # bool (rows, cols): the finding on the shown slice
    context: np.ndarray | None  # bool (rows, cols): the zone's outline beside a focus, or None
    title: str  # burned in at the top left ("Focus 1")
    colour: str  # the outline's

    @property
    def px_per_mm(self) -> float:
        return ZOOM_WIDTH_PX / self.picture.size_mm[0]


def _window(img: np.ndarray, centre: tuple[int, int], half: tuple[int, int]) -> np.ndarray:
    """``img[c - hc : c + hc + 1, r - hr : r + hr + 1]``, zeros where that runs off the image."""
    out = np.zeros((2 * half[0] + 1, 2 * half[1] + 1), img.dtype)
    lo = [centre[a] - half[a] for a in (0, 1)]
    src = tuple(slice(max(lo[a], 0), min(lo[a] + out.shape[a], img.shape[a])) for a in (0, 1))
    dst = tuple(slice(s.start - lo[a], s.stop - lo[a]) for a, s in enumerate(src))
    if all(s.stop > s.start for s in src):
        out[dst] = img[src]
    return out


def _best_slice(mask: np.ndarray, normal: int, k: int) -> int:
    """The slice through the centre, or the one where the finding is largest when it misses the centre's."""
    n = mask.shape[normal]
    k = int(np.clip(k, 0, n - 1))
    if np.take(mask, k, axis=normal).any() or not mask.any():
        return k
    area = mask.sum(axis=tuple(a for a in range(3) if a != normal))
    return int(np.argmax(area))


def zoom_view(pre: np.ndarray, post: np.ndarray, affine: np.ndarray, centre_lps: np.ndarray,
              mask: np.ndarray, half_mm: float, title: str, colour: str,
              context_mask: np.ndarray | None = None) -> ZoomView:
    """The first subtraction ``post - pre`` (negative as 0) on the acquisition-plane slice through
    ``centre_lps``, ``half_mm`` around it, with the outline of ``mask`` (bool, same grid) and of
    ``context_mask`` (the zone, beside a focus)."""
    plane = acquisition_plane(affine)
    normal = NORMAL_AXIS[plane]
    col_axis, row_axis, _ = DISPLAY_AXES[plane]
    sub = lps_aligned(np.clip(np.asarray(post, np.float32) - np.asarray(pre, np.float32), 0, None), affine)
    ijk = sub.world_to_voxel(np.asarray(centre_lps, float))
    m = lps_aligned(np.asarray(mask, np.float32), affine).data > 0.5
    k = _best_slice(m, normal, int(round(float(ijk[normal]))))
    centre = (int(round(float(ijk[col_axis]))), int(round(float(ijk[row_axis]))))
    half = (max(1, int(round(half_mm / sub.spacing[col_axis]))), max(1, int(round(half_mm / sub.spacing[row_axis]))))

    def cut(volume: np.ndarray) -> np.ndarray:
        return _window(np.take(volume, k, axis=normal), centre, half)

    picture = display_plane(cut(sub.data), sub.spacing, plane)
    outline = display_plane(cut(m), sub.spacing, plane).image
    context = None
    if context_mask is not None:
        c = lps_aligned(np.asarray(context_mask, np.float32), affine).data > 0.5
        context = display_plane(cut(c), sub.spacing, plane).image
    return ZoomView(picture, outline, context, title, colour)


def _contour(ax, mask: np.ndarray, picture: DisplayPlane, colour: str, width: float, style: str) -> None:
    if not mask.any():
        return
    sr, sc = picture.spacing_mm
    xs = (np.arange(mask.shape[1]) + 0.5) * sc
    ys = (np.arange(mask.shape[0]) + 0.5) * sr
    ax.contour(xs, ys, mask.astype(float), levels=[0.5], colors=colour, linewidths=width, linestyles=style)


def scale_bar_mm(view: ZoomView) -> tuple[float, float, float]:
    """Where the scale bar lies: (x start, x end, y) in mm from the top left."""
    w, h = view.picture.size_mm
    x0 = 0.06 * w
    return x0, x0 + SCALE_BAR_MM, 0.93 * h


def white_level(view: ZoomView) -> float:
    """The display's white: the picture's :data:`WHITE_PERCENTILE`, or the finding's own peak
    when higher (a bright focus keeps its inner texture instead of a white blot)."""
    img = view.picture.image
    positive = img[img > 0]
    level = float(np.percentile(positive, WHITE_PERCENTILE)) if positive.size else 1.0
    inside = img[view.outline]
    return max(level, float(inside.max()) if inside.size else 0.0) or 1.0


def zoom_figure(view: ZoomView):
    fig, ax = picture_figure(view.picture, view.px_per_mm, WHITE_PERCENTILE, white_level(view))
    w, h = view.picture.size_mm
    if view.context is not None:
        _contour(ax, view.context, view.picture, CONTEXT_COLOUR, 1.0, "dashed")
    _contour(ax, view.outline, view.picture, view.colour, 1.6, "solid")
    x0, x1, y = scale_bar_mm(view)
    ax.plot([x0, x1], [y, y], color=BAR_COLOUR, linewidth=3, solid_capstyle="butt")
    ax.text((x0 + x1) / 2, y - 0.02 * h, f"{SCALE_BAR_MM:.0f} mm", color=BAR_COLOUR, fontsize=9,
            ha="center", va="bottom", path_effects=TEXT_EDGE)
    ax.text(0.03 * w, 0.03 * h, view.title, color=view.colour, fontsize=11, fontweight="bold",
            ha="left", va="top", path_effects=TEXT_EDGE)
    draw_edge_labels(ax, view.picture, "#ffffff", fontsize=10)
    return fig


def zoom_rgb(view: ZoomView) -> np.ndarray:
    """The rendered view as an (H, W, 3) uint8 array (what the PNG holds)."""
    return figure_rgb(zoom_figure(view))


def zoom_png(view: ZoomView) -> bytes:
    return picture_png(zoom_figure(view))


def finding_caption(name: str, size: str, location: str | None = None) -> str:
    """"Focus 1: 8 mm, 2 o'clock, 4 cm from the nipple; ...". ``location``: the finding's place
    as radiologists give it (clock face, distance from the nipple), when known."""
    where = f", {location}" if location else ""
    return (f"{name}: {size}{where}. First subtraction (1st post-contrast minus pre-contrast), "
            f"slice through its centre; scale bar {SCALE_BAR_MM:.0f} mm")


__all__ = ["SCALE_BAR_MM", "ZOOM_WIDTH_PX", "ZoomView", "finding_caption", "scale_bar_mm", "white_level", "zoom_png",
           "zoom_rgb", "zoom_view"]
