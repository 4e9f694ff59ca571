"""Images of the longitudinal comparison (issue 14): the trend plot (zone volume, rim and focus
enhancement against months since the procedure) and the previous follow-up beside the current one
at the same place (the previous one resampled through the registration of the two). PNG bytes out."""

from __future__ import annotations

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from scipy import ndimage

from followup.pipelines.assess import Assessment
from followup.pipelines.assessment import PriorRead
from followup.pipelines.longitudinal import map_points
from followup.reporting.key_images import (
    FOCUS_COLOUR,
    ZONE_COLOUR,
    figure_png,
    mask_contour,
    new_figure,
    show_slice,
    slice_world,
    subtraction_image,
)
from followup.reporting.model import Longitudinal


def trend_image(lon: Longitudinal) -> bytes | None:
    """Zone volume (left axis) and the rim's and the strongest suspicious focus's enhancement (right
    axis) against months since the procedure; None with fewer than two measured time points."""
    pts = [t for t in lon.time_points if t.zone_volume_ml is not None and t.months_since_procedure is not None]
    if len(pts) < 2:
        return None
    months = [t.months_since_procedure for t in pts]
    fig, ax = new_figure(figsize=(5.4, 3.2))
    ax.plot(months, [t.zone_volume_ml for t in pts], "-o", color="#2a6f2a", label="zone volume (ml)")
    ax.set_xlabel("months since the procedure")
    ax.set_ylabel("ablation zone volume (ml)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    right = ax.twinx()
    right.plot(months, [t.rim_initial_enhancement_pct or 0.0 for t in pts], "--s", color=ZONE_COLOUR,
               label="rim initial enhancement (%)")
    peaks = [max((f.peak_enhancement_pct for f in t.suspicious_foci), default=np.nan) for t in pts]
    if np.isfinite(peaks).any():
        right.plot(months, peaks, "-^", color=FOCUS_COLOUR, label="suspicious focus peak enhancement (%)")
    right.set_ylabel("enhancement (%)")
    right.set_ylim(bottom=0)
    lines = ax.get_lines() + right.get_lines()
    ax.legend(lines, [ln.get_label() for ln in lines], fontsize=7, loc="upper right")
    ax.set_title(f"Surveillance: trend {lon.trend or 'none'}", fontsize=10)
    return figure_png(fig)


def comparison_image(current: Assessment, prior: PriorRead) -> bytes | None:
    """The previous follow-up beside the current one, through the current follow-up's first
    suspicious focus (else its zone's centre): the same place, the previous study resampled
    through ``prior.current_to_prior``."""
    a, p = current, prior.assessment
    if a.roi is None or a.segmentation is None or p.roi is None or p.segmentation is None \
            or prior.current_to_prior is None or len(a.roi.phases) < 2 or len(p.roi.phases) < 2:
        return None
    grid = a.roi.grid
    # through the first suspicious focus (what changed, if anything did), else the zone's centre
    site = next((f.centre_lps for f in a.segmentation.foci if f.suspicious), a.segmentation.zone.centre_lps)
    k = int(round(grid.world_to_voxel(site)[2]))
    k = min(max(k, 0), grid.shape[2] - 1)
    cur = subtraction_image(a.roi.phases[0][:, :, k], a.roi.phases[1][:, :, k]).T
    world = slice_world(grid.affine, grid.shape[:2], k)  # rows j, cols i
    in_prior = map_points(prior.current_to_prior, world.reshape(-1, 3))
    inv = np.linalg.inv(p.roi.grid.affine)
    ijk = (in_prior @ inv[:3, :3].T + inv[:3, 3]).T
    prev_sub = subtraction_image(p.roi.phases[0], p.roi.phases[1])
    prev = ndimage.map_coordinates(prev_sub, ijk, order=1, cval=0.0).reshape(cur.shape)
    prev_zone = ndimage.map_coordinates(p.segmentation.zone.mask.astype(np.float32), ijk, order=0,
                                        cval=0.0).reshape(cur.shape) > 0.5
    vmax = float(np.percentile(np.concatenate([cur.ravel(), prev.ravel()]), 99.7)) or 1.0
    fig = Figure(figsize=(8.4, 4.2))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2)
    when = prior.study.study_date.isoformat() if prior.study.study_date else "previous"
    show_slice(axes[0], prev, grid.affine, f"Previous follow-up ({when})", vmax)
    mask_contour(axes[0], prev_zone, grid.affine, ZONE_COLOUR)
    show_slice(axes[1], cur, grid.affine, "This follow-up, same place", vmax)
    mask_contour(axes[1], a.segmentation.zone.mask[:, :, k].T, grid.affine, ZONE_COLOUR)
    for f in a.segmentation.foci:
        if f.suspicious:
            mask_contour(axes[1], f.mask[:, :, k].T, grid.affine, FOCUS_COLOUR)
    return figure_png(fig)


def longitudinal_images(a: Assessment, lon: Longitudinal | None) -> list[tuple[str, bytes]]:
    """(caption, PNG) of the comparison, for the HTML and PDF reports; none without priors."""
    if lon is None or a.longitudinal is None:
        return []
    out = []
    prev = a.longitudinal.previous
    if prev is not None:
        png = comparison_image(a, prev)
        if png is not None:
            out.append(("Previous follow-up beside this one at the same place (subtraction, 1st post-contrast "
                        "minus pre-contrast); green: ablation zone, red: suspicious foci", png))
    trend = trend_image(lon)
    if trend is not None:
        out.append(("Surveillance trend: ablation zone volume and enhancement against months since the "
                    "procedure", trend))
    return out


__all__ = ["comparison_image", "longitudinal_images", "trend_image"]
