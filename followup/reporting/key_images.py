"""Key images of a report, PNG bytes out (matplotlib, Agg backend), in the report's order:

* :func:`mip_key_image`: the MIP of the first subtraction of the treated breast, whole follow-up
  volumes, findings marked (:mod:`followup.reporting.mip_image`): what a radiologist looks at first;
* :func:`finding_images`: a zoomed view of the zone and of each suspicious focus, 10 mm scale bar,
  caption hook for the location (:mod:`followup.reporting.finding_images`);
* :func:`baseline_image`, :func:`followup_images`: subtraction slices of the 90 mm analysis crop,
  in the acquisition plane as the scanner wrote them (columns to the right, rows down), true mm
  aspect; the follow-up's outlines only the zone and the suspicious foci, touching lobes as one;
* :func:`curves_image`: the time-signal curves of the foci and the rim.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from scipy import ndimage

from followup.pipelines.assess import Assessment
from followup.pipelines.roi import box_indices, crop
from followup.reporting.finding_images import finding_caption, zoom_png, zoom_view
from followup.reporting.mip_image import Mark, MarkKind, mip_png, mip_view
from followup.volume import Volume

# The caption hook: a finding's place as radiologists give it (clock face, distance from the
# nipple) from its LPS centre, or None when not known.
LocationText = Callable[[np.ndarray], str | None]

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


def focus_groups(masks: list[tuple[int, np.ndarray]]) -> list[tuple[str, np.ndarray]]:
    """Touching suspicious foci (the lobes of one nodule) as one outline with one label ("1,2"):
    (label, bool mask) per connected group on the slice."""
    if not masks:
        return []
    union = np.any([m for _, m in masks], axis=0)
    groups, n = ndimage.label(union)
    out = []
    for g in range(1, n + 1):
        part = groups == g
        numbers = [num for num, m in masks if (m & part).any()]
        out.append((numbers, part))
    out.sort(key=lambda item: item[0])  # by the first focus's number
    return [(",".join(str(num) for num in numbers), part) for numbers, part in out]


def followup_images(a: Assessment, radius: float, margin: float) -> list[tuple[str, bytes]]:
    """The whole-crop slice through the mapped tumour (or the zone found in the follow-up when the
    registration is poor): the zone and the suspicious foci outlined, touching lobes as one
    outline with one label (each focus has its own zoomed view, :func:`finding_images`)."""
    roi, seg = a.roi, a.segmentation
    assert roi is not None and seg is not None and a.tumour_center_followup is not None
    grid = roi.grid
    pre, post = roi.phases[0], roi.phases[1]
    center = a.tumour_center_followup
    title, k = "Follow-up: subtraction through the mapped tumour", int(round(grid.world_to_voxel(center)[2]))
    if a.registration_poor and a.zone_found:
        # the mapped tumour may be off: lead with the zone as found in the follow-up itself
        k = int(round(grid.world_to_voxel(seg.zone.centre_lps)[2]))
        title = "Follow-up: subtraction through the ablation zone found in the follow-up (registration poor)"
    vmax = float(np.percentile(subtraction_image(pre, post), 99.7)) or 1.0
    k = min(max(k, 0), grid.shape[2] - 1)
    sub = subtraction_image(pre[:, :, k], post[:, :, k]).T
    world = slice_world(grid.affine, grid.shape[:2], k)
    fig, ax = new_figure(figsize=(4.2, 4.2))
    show_slice(ax, sub, grid.affine, title, vmax)
    mask_contour(ax, seg.zone.mask[:, :, k].T, grid.affine, ZONE_COLOUR)
    _circle(ax, world, grid.affine, center, radius, TUMOUR_COLOUR, "solid")
    _circle(ax, world, grid.affine, center, radius + margin, MARGIN_COLOUR, "dashed")
    sp = np.linalg.norm(grid.affine[:3, :3], axis=0)
    suspicious = [f for f in seg.foci if f.suspicious]
    on_slice = [(n, f.mask[:, :, k].T) for n, f in enumerate(suspicious, start=1) if f.mask[:, :, k].any()]
    for label, part in focus_groups(on_slice):
        mask_contour(ax, part, grid.affine, FOCUS_COLOUR)
        rows, cols = np.nonzero(part)
        top = int(np.argmin(rows))  # the label beside the group's top
        ax.annotate(label, ((cols[top] + 0.5) * sp[0], (rows[top] + 0.5) * sp[1]), xytext=(6, 4),
                    textcoords="offset points", color=FOCUS_COLOUR, fontsize=11, fontweight="bold")
    return [(title, figure_png(fig))]


def _point(v: np.ndarray) -> tuple[float, float, float]:
    return float(v[0]), float(v[1]), float(v[2])


def _suspicious(a: Assessment) -> list:
    seg = a.segmentation
    return [] if seg is None else [f for f in seg.foci if f.suspicious]  # numbered as in the report


def mip_key_image(a: Assessment, pre: Volume, post: Volume, laterality: str,
                  study_laterality: str | None = None,
                  nipple_lps: np.ndarray | None = None) -> tuple[str, bytes] | None:
    """The MIP of the first subtraction of the treated breast (whole follow-up volumes ``pre``,
    ``post``), the zone outlined, each suspicious focus numbered, the nipple when known."""
    roi, seg = a.roi, a.segmentation
    if roi is None or seg is None:
        return None
    marks = [Mark(_point(seg.zone.centre_lps), "zone", MarkKind.ZONE)]
    marks += [Mark(_point(f.centre_lps), str(n), MarkKind.FOCUS, f.largest_diameter_mm / 2)
              for n, f in enumerate(_suspicious(a), start=1)]
    marks += [Mark(_point(m.centre_lps), f"NME {k}", MarkKind.FOCUS, max(m.extent_mm / 2, 4.0))
              for k, m in enumerate(_suspicious_nme(a), start=1)]
    if nipple_lps is not None:
        marks.append(Mark(_point(nipple_lps), "N", MarkKind.NIPPLE))
    view = mip_view(pre.data, post.data, pre.affine, laterality, marks, seg.zone.mask, roi.grid.affine,
                    study_laterality)
    caption = (f"Maximum-intensity projection of the first subtraction (1st post-contrast minus "
               f"pre-contrast), {view.picture.plane}, {view.side}: green: ablation zone, red rings: "
               "suspicious foci and non-mass enhancement (numbered as in the findings)")
    return caption + (", N: nipple" if nipple_lps is not None else ""), mip_png(view)


def finding_images(a: Assessment, location: LocationText | None = None) -> list[tuple[str, bytes]]:
    """A zoomed view of the ablation zone, then of each suspicious focus and non-mass enhancement
    (the zone dashed beside it), on the first subtraction; ``location`` gives each caption its clock face when known."""
    roi, seg = a.roi, a.segmentation
    if roi is None or seg is None:
        return []
    pre, post, aff = roi.phases[0], roi.phases[1], roi.grid.affine
    where = location or (lambda _p: None)
    z = seg.zone
    size = " x ".join(f"{v:.0f}" for v in z.axes_mm) + " mm"
    half = float(np.clip(max(z.axes_mm, default=20.0) / 2 + 12.0, 20.0, 50.0))
    out = [(finding_caption("Ablation zone", size, where(z.centre_lps)),
            zoom_png(zoom_view(pre, post, aff, z.centre_lps, z.mask, half, "Ablation zone", ZONE_COLOUR)))]
    for n, f in enumerate(_suspicious(a), start=1):
        half = float(np.clip(f.largest_diameter_mm + 8.0, 15.0, 30.0))
        view = zoom_view(pre, post, aff, f.centre_lps, f.mask, half, f"Focus {n}", FOCUS_COLOUR, z.mask)
        out.append((finding_caption(f"Focus {n}", f"{f.largest_diameter_mm:.0f} mm", where(f.centre_lps)),
                    zoom_png(view)))
    for k, m in enumerate(_suspicious_nme(a), start=1):
        half = float(np.clip(m.extent_mm / 2 + 10.0, 15.0, 40.0))
        view = zoom_view(pre, post, aff, m.centre_lps, m.mask, half, f"NME {k}", FOCUS_COLOUR, z.mask)
        out.append((finding_caption(f"Non-mass enhancement {k}", f"{m.extent_mm:.0f} mm", where(m.centre_lps)),
                    zoom_png(view)))
    return out


def _suspicious_nme(a: Assessment) -> list:
    """The suspicious non-mass enhancement, in the report's order."""
    return [m for m in (a.segmentation.nme if a.segmentation else ()) if m.suspicious]


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
