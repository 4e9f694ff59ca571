"""Key images of a report: subtraction slices through the lesion, outlines and marked foci,
and the time-signal curves of the foci and the rim. PNG bytes out (matplotlib, Agg backend).

Slices are shown in the acquisition plane, as the scanner wrote them (columns to the right, rows
down: radiological convention for axial images), cropped around the lesion, in true mm aspect.
"""

from __future__ import annotations

import io

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from followup.pipelines.assess import Assessment
from followup.pipelines.roi import box_indices, crop
from followup.volume import Volume

CROP_HALF_MM = 45.0
TUMOUR_COLOUR = "#ffb000"
MARGIN_COLOUR = "#00c8ff"
ZONE_COLOUR = "#7CFC00"
FOCUS_COLOUR = "#ff3030"


def new_figure(figsize: tuple[float, float]):
    """A figure on the Agg canvas and its axes (matplotlib's object API: no pyplot, whose import
    and figure registry a report does not need)."""
    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig, fig.subplots()


def figure_png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", facecolor="white")
    return buf.getvalue()


def slice_world(vol_affine: np.ndarray, shape: tuple[int, int], k: int) -> np.ndarray:
    """LPS coordinates (rows=j, cols=i, 3) of slice k's pixels."""
    jj, ii = np.meshgrid(np.arange(shape[1]), np.arange(shape[0]), indexing="ij")
    ijk = np.stack([ii, jj, np.full_like(ii, k)], -1).astype(float)
    return ijk @ vol_affine[:3, :3].T + vol_affine[:3, 3]


def show_slice(ax, image2d: np.ndarray, affine: np.ndarray, title: str, vmax: float) -> None:
    sp = np.linalg.norm(affine[:3, :3], axis=0)
    h, w = image2d.shape
    ax.imshow(image2d, cmap="gray", vmin=0, vmax=vmax, extent=(0, w * sp[0], h * sp[1], 0),
              interpolation="bilinear")
    ax.set_title(title, fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])


def _circle(ax, world: np.ndarray, affine: np.ndarray, center: np.ndarray, radius: float,
            colour: str, style: str) -> None:
    """Where a sphere (center, radius in mm) cuts the displayed slice."""
    sp = np.linalg.norm(affine[:3, :3], axis=0)
    dist = np.linalg.norm(world - center, axis=-1)
    if dist.min() >= radius:
        return
    h, w = dist.shape
    xs = (np.arange(w) + 0.5) * sp[0]
    ys = (np.arange(h) + 0.5) * sp[1]
    ax.contour(xs, ys, dist, levels=[radius], colors=colour, linestyles=style, linewidths=1.4)


def mask_contour(ax, mask2d: np.ndarray, affine: np.ndarray, colour: str) -> None:
    if not mask2d.any():
        return
    sp = np.linalg.norm(affine[:3, :3], axis=0)
    h, w = mask2d.shape
    xs = (np.arange(w) + 0.5) * sp[0]
    ys = (np.arange(h) + 0.5) * sp[1]
    ax.contour(xs, ys, mask2d.astype(float), levels=[0.5], colors=colour, linewidths=1.0)


def subtraction_image(pre: np.ndarray, post: np.ndarray) -> np.ndarray:
    return np.clip(post - pre, 0, None)


def baseline_image(pre: Volume, post: Volume, center: np.ndarray, radius: float,
                   margin: float) -> bytes:
    box = box_indices(pre, center, CROP_HALF_MM)
    pre_c, post_c = crop(pre, box), crop(post, box)
    k = int(round(pre_c.world_to_voxel(center)[2]))
    k = min(max(k, 0), pre_c.shape[2] - 1)
    sub = subtraction_image(pre_c.data[:, :, k], post_c.data[:, :, k]).T
    world = slice_world(pre_c.affine, pre_c.shape[:2], k)
    fig, ax = new_figure(figsize=(4.2, 4.2))
    show_slice(ax, sub, pre_c.affine, "Baseline: subtraction (1st post - pre)", float(np.percentile(sub, 99.7)) or 1)
    _circle(ax, world, pre_c.affine, center, radius, TUMOUR_COLOUR, "solid")
    _circle(ax, world, pre_c.affine, center, radius + margin, MARGIN_COLOUR, "dashed")
    return figure_png(fig)


def followup_images(a: Assessment, radius: float, margin: float) -> list[tuple[str, bytes]]:
    """Slice through the mapped tumour, then one through each suspicious focus off that slice."""
    roi, seg = a.roi, a.segmentation
    assert roi is not None and seg is not None and a.tumour_center_followup is not None
    grid = roi.grid
    pre, post = roi.phases[0], roi.phases[1]
    center = a.tumour_center_followup
    k_center = int(round(grid.world_to_voxel(center)[2]))
    slices = [("Follow-up: subtraction through the mapped tumour", k_center)]
    if a.registration_poor and a.zone_found:
        # the mapped tumour may be off: lead with the zone as found in the follow-up itself
        k_center = int(round(grid.world_to_voxel(seg.zone.centre_lps)[2]))
        slices = [("Follow-up: subtraction through the ablation zone found in the follow-up "
                   "(registration poor)", k_center)]
    for n, f in enumerate(seg.foci, start=1):
        if f.suspicious:
            kf = int(round(grid.world_to_voxel(f.centre_lps)[2]))
            if abs(kf - k_center) > 1:
                slices.append((f"Follow-up: subtraction through focus {n}", kf))
    out = []
    vmax = float(np.percentile(subtraction_image(pre, post), 99.7)) or 1.0
    for title, k in slices:
        k = min(max(k, 0), grid.shape[2] - 1)
        sub = subtraction_image(pre[:, :, k], post[:, :, k]).T
        world = slice_world(grid.affine, grid.shape[:2], k)
        fig, ax = new_figure(figsize=(4.2, 4.2))
        show_slice(ax, sub, grid.affine, title, vmax)
        mask_contour(ax, seg.zone.mask[:, :, k].T, grid.affine, ZONE_COLOUR)
        _circle(ax, world, grid.affine, center, radius, TUMOUR_COLOUR, "solid")
        _circle(ax, world, grid.affine, center, radius + margin, MARGIN_COLOUR, "dashed")
        sp = np.linalg.norm(grid.affine[:3, :3], axis=0)
        for n, f in enumerate(seg.foci, start=1):
            if not f.suspicious:
                continue
            mask_contour(ax, f.mask[:, :, k].T, grid.affine, FOCUS_COLOUR)
            ijk = grid.world_to_voxel(f.centre_lps)
            if abs(ijk[2] - k) <= 1.5:
                ax.annotate(str(n), ((ijk[0] + 0.5) * sp[0], (ijk[1] + 0.5) * sp[1]),
                            xytext=(8, -8), textcoords="offset points", color=FOCUS_COLOUR,
                            fontsize=11, fontweight="bold")
        out.append((title, figure_png(fig)))
    return out


def curves_image(a: Assessment, times_s: list[float]) -> bytes | None:
    """Mean signal over time of each suspicious focus and of the rim, relative to pre-contrast."""
    roi, seg = a.roi, a.segmentation
    if roi is None or seg is None or len(roi.phases) < 2:
        return None
    t = np.asarray(times_s, dtype=float)
    if not np.all(np.isfinite(t)):
        t = np.arange(len(roi.phases), dtype=float) * 60.0
    fig, ax = new_figure(figsize=(4.6, 3.2))
    if seg.rim.mask.any():
        s = np.array([p[seg.rim.mask].mean() for p in roi.phases])
        ax.plot(t / 60, 100 * (s - s[0]) / s[0], "-o", color=ZONE_COLOUR, label="rim")
    colours = [FOCUS_COLOUR, "#d000d0", "#ff8c00", "#8000ff"]
    for n, f in enumerate(seg.foci, start=1):
        if f.suspicious:
            s = np.array([p[f.mask].mean() for p in roi.phases])
            ax.plot(t / 60, 100 * (s - s[0]) / s[0], "-o", color=colours[(n - 1) % len(colours)],
                    label=f"focus {n} ({f.curve_type})")
    ax.axhline(0, color="#999", lw=0.8)
    ax.set_xlabel("minutes after the pre-contrast phase")
    ax.set_ylabel("enhancement (%)")
    ax.set_title("Time-signal curves", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return figure_png(fig)
