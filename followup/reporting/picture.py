"""Pictures of a volume as radiologists view them, shared by the MIP and the zoomed key images.

* :func:`lps_aligned` puts a volume in LPS-aligned voxel order (axes permuted and flipped so that
  voxel axis 0, 1, 2 runs along +x, +y, +z); for an oblique acquisition each axis is the voxel
  axis nearest to it (an approximation, labelled as one).
* :func:`display_plane`: axial and coronal with the patient's right on the image's left
  (radiological convention), anterior (axial) or superior (coronal, sagittal) at the top;
  sagittal with anterior on the left. Orientation letters at the edges' midpoints.
* :func:`picture_figure`: a figure exactly the picture's size at a given scale (pixels per mm),
  its axes filling it, so data millimetres map linearly to output pixels (tests measure on it).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patheffects import withStroke

from followup.volume import Volume

DPI = 100.0
# Text on the picture keeps a dark edge: readable on bright tissue (the heart, a focus) as on black.
TEXT_EDGE = [withStroke(linewidth=2.5, foreground="black")]


class Plane(StrEnum):
    AXIAL = "axial"
    CORONAL = "coronal"
    SAGITTAL = "sagittal"



# The display's (column axis, row axis, rows run toward -axis) of each plane, LPS axes 0=x 1=y 2=z.
DISPLAY_AXES = {Plane.AXIAL: (0, 1, False), Plane.CORONAL: (0, 2, True), Plane.SAGITTAL: (1, 2, True)}
# Orientation letters at the (left, right, top, bottom) edges.
EDGE_LABELS = {Plane.AXIAL: ("R", "L", "A", "P"), Plane.CORONAL: ("R", "L", "S", "I"),
               Plane.SAGITTAL: ("A", "P", "S", "I")}


@dataclass(frozen=True)
class DisplayPlane:
    """A 2D picture in display orientation: rows top to bottom, columns left to right."""

    image: np.ndarray  # (rows, cols)
    spacing_mm: tuple[float, float]  # (row, column) pixel size
    plane: Plane
    edge_labels: tuple[str, str, str, str]  # left, right, top, bottom

    @property
    def size_mm(self) -> tuple[float, float]:
        """(width, height)."""
        return self.image.shape[1] * self.spacing_mm[1], self.image.shape[0] * self.spacing_mm[0]


def acquisition_plane(affine: np.ndarray) -> Plane:
    """The plane the slices were acquired in, from the slice normal (voxel axis k)."""
    normal = np.asarray(affine, float)[:3, 2]
    return {0: Plane.SAGITTAL, 1: Plane.CORONAL, 2: Plane.AXIAL}[int(np.argmax(np.abs(normal)))]


def _axis_order(affine: np.ndarray) -> list[int]:
    """The voxel axis that runs nearest to each LPS axis x, y, z (a permutation)."""
    a = np.abs(np.asarray(affine, float)[:3, :3])
    order = [-1, -1, -1]
    for _ in range(3):  # greedy on the largest remaining cosine
        lps, vox = np.unravel_index(int(np.argmax(a)), a.shape)
        order[int(lps)] = int(vox)
        a[lps, :] = -1.0
        a[:, vox] = -1.0
    return order


def lps_aligned(data: np.ndarray, affine: np.ndarray) -> Volume:
    """The same voxels with axes permuted and flipped so that axis 0, 1, 2 runs along +x, +y, +z."""
    aff = np.asarray(affine, float)
    order = _axis_order(aff)
    out = np.transpose(np.asarray(data), order)
    cols, start = [], np.zeros(3)
    for lps_axis, vox in enumerate(order):
        col = aff[:3, vox]
        if col[lps_axis] < 0:
            out = np.flip(out, axis=lps_axis)
            start[vox] = data.shape[vox] - 1
            col = -col
        cols.append(col)
    new = np.eye(4)
    new[:3, :3] = np.stack(cols, axis=1)
    new[:3, 3] = aff[:3, :3] @ start + aff[:3, 3]
    return Volume(np.ascontiguousarray(out, dtype=np.float32), new)


def display_plane(image2d: np.ndarray, spacing3: np.ndarray, plane: Plane) -> DisplayPlane:
    """A 2D array indexed by the plane's (column LPS axis, row LPS axis), of an LPS-aligned volume,
    in display orientation."""
    col_axis, row_axis, flip_rows = DISPLAY_AXES[plane]
    img = np.asarray(image2d).T  # rows = row axis
    if flip_rows:
        img = img[::-1, :]
    return DisplayPlane(np.ascontiguousarray(img), (float(spacing3[row_axis]), float(spacing3[col_axis])),
                        plane, EDGE_LABELS[plane])


def display_mm(vol: Volume, plane: Plane, lps: np.ndarray) -> np.ndarray:
    """(N, 2) positions (x from the left edge, y from the top edge, mm) in the display of ``plane``
    of an LPS-aligned volume (pixel centres at half a pixel)."""
    col_axis, row_axis, flip_rows = DISPLAY_AXES[plane]
    ijk = vol.world_to_voxel(np.atleast_2d(np.asarray(lps, float)))
    sp = vol.spacing
    rows = ijk[:, row_axis]
    if flip_rows:
        rows = vol.shape[row_axis] - 1 - rows
    return np.stack([(ijk[:, col_axis] + 0.5) * sp[col_axis], (rows + 0.5) * sp[row_axis]], axis=1)


def picture_figure(picture: DisplayPlane, px_per_mm: float, white_percentile: float,
                   vmax: float | None = None):
    """The picture (grey, 0 to the ``white_percentile`` of its values, or ``vmax``) on a figure of
    its size in mm times ``px_per_mm`` pixels; the axes fill the figure, in mm from the top left."""
    w, h = picture.size_mm
    w_px, h_px = max(1, round(w * px_per_mm)), max(1, round(h * px_per_mm))  # whole pixels (+ a hair
    # against the float product flooring below the integer)
    fig = Figure(figsize=((w_px + 1e-3) / DPI, (h_px + 1e-3) / DPI), dpi=DPI, facecolor="black")
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
    img = picture.image
    if vmax is None:
        positive = img[img > 0]
        vmax = float(np.percentile(positive, white_percentile)) if positive.size else 1.0
    ax.imshow(img, cmap="gray", vmin=0, vmax=vmax or 1.0, extent=(0, w, h, 0), interpolation="bilinear",
              aspect="auto")
    ax.set_xlim(0, w)
    ax.set_ylim(h, 0)
    ax.set_axis_off()
    return fig, ax


def draw_edge_labels(ax, picture: DisplayPlane, colour: str, fontsize: float = 11) -> None:
    """The orientation letters at the middle of each edge (left, right, top, bottom)."""
    w, h = picture.size_mm
    left, right, top, bottom = picture.edge_labels
    kw = {"color": colour, "fontsize": fontsize, "fontweight": "bold", "path_effects": TEXT_EDGE}
    pad = 0.015 * max(w, h)
    ax.text(pad, h / 2, left, ha="left", va="center", **kw)
    ax.text(w - pad, h / 2, right, ha="right", va="center", **kw)
    ax.text(w / 2, pad, top, ha="center", va="top", **kw)
    ax.text(w / 2, h - pad, bottom, ha="center", va="bottom", **kw)


def figure_rgb(fig) -> np.ndarray:
    """The figure as drawn: (H, W, 3) uint8."""
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[:, :, :3].copy()


def picture_png(fig) -> bytes:
    """PNG bytes of the figure at its own size (no tight bounding box: pixels stay where drawn)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, facecolor="black")
    return buf.getvalue()


__all__ = ["DISPLAY_AXES", "EDGE_LABELS", "TEXT_EDGE", "DisplayPlane", "Plane", "acquisition_plane", "display_mm",
           "display_plane", "draw_edge_labels", "figure_rgb", "lps_aligned", "picture_figure", "picture_png"]
