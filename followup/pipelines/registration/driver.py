"""The registration itself: global search, multi-start rigid, rigid then affine at 6 and 3 mm, then a
local rigid refinement around the lesion, and the quality figures of the result (see the package
docstring)."""

from __future__ import annotations

import numpy as np
import torch

from followup.pipelines.registration.box import rigid_in_box
from followup.pipelines.registration.compute import single_threaded
from followup.pipelines.registration.initialise import body_overlap, coarse_search
from followup.pipelines.registration.levels import GLOBAL_LEVELS, LOCAL_HALF_BOX_MM, LOCAL_LEVEL
from followup.pipelines.registration.metric import matrix_mi, overlap_nmi, parzen_weights
from followup.pipelines.registration.optimise import optimise
from followup.pipelines.registration.quality import (
    NCC_EXCLUDE_RADIUS_MM,
    local_figures,
    quality_reasons,
)
from followup.pipelines.registration.result import Quality, RegistrationResult
from followup.pipelines.registration.sampling import level_points, pool_level, prepare
from followup.pipelines.registration.transform import Transform, inverse_point
from followup.volume import Volume

# Global initialisation (issue 11): starts refined from the coarse search; a refined start whose MI
# is within RIVAL_MI of the best one's is a rival, and rivals must agree at the lesion.
STARTS = 3
RIVAL_MI = 0.05


def _multi_start(bases: np.ndarray, centre: np.ndarray, level: tuple, lesion_b: np.ndarray,
                 gen: torch.Generator) -> tuple[np.ndarray, float]:
    """Multi-start: the first level's rigid refinement from every start in one batch. The best
    start's matrix by MI, and how far apart the lesion lands under the starts that nearly tie with
    it (``RIVAL_MI``): the start spread."""
    m_first, pts0, vals0, w0, iters0, n0 = level
    model = Transform(centre, affine=False, base=bases, batch=len(bases))
    optimise(model, pts0, vals0, m_first, iters0, n0, gen, w_fixed_all=w0)
    refined = model.numpy()
    start_mi = np.array([matrix_mi(m, pts0, vals0, m_first) for m in refined])
    best = int(np.argmax(start_mi))
    lesion_starts = np.array([inverse_point(m, lesion_b) for m in refined])
    rivals = start_mi >= start_mi[best] - RIVAL_MI
    return refined[best], float(np.max(np.linalg.norm(lesion_starts[rivals] - lesion_starts[best], axis=1)))


def _local_refinement(f_img, m_img, lesion_fu: np.ndarray, global_m: np.ndarray, gen: torch.Generator,
                      reasons: list[str]) -> tuple[np.ndarray, float, float, float]:
    """Local rigid refinement in a box around the lesion's position in the follow-up: the better
    of it and the global matrix there by local MI, with the local NCC before and after and the local
    normalised MI after (a reason is added where the box holds too little tissue to check)."""
    local = rigid_in_box(f_img, m_img, lesion_fu, LOCAL_HALF_BOX_MM, LOCAL_LEVEL, base=global_m,
                         gen=gen, ncc_exclude_mm=NCC_EXCLUDE_RADIUS_MM)
    if local is None:
        reasons.append("too little tissue around the lesion's mapped position for a local check")
        return global_m, float("nan"), float("nan"), float("nan")
    local_m, ncc_before, ncc_global, ncc_after = local
    (_, nmi_global), (_, nmi_local) = local_figures(f_img, m_img, lesion_fu, [global_m, local_m])
    if nmi_local < nmi_global:  # keep the better of the two around the lesion (MI: any contrast)
        return global_m, ncc_before, ncc_global, nmi_global
    return local_m, ncc_before, ncc_after, nmi_local



@single_threaded
def register(fixed: Volume, moving: Volume, lesion_baseline_lps: np.ndarray,
             seed: int = 0, global_search: bool = True) -> RegistrationResult:
    """Register follow-up (``fixed``) to baseline (``moving``) pre-contrast volumes.

    ``lesion_baseline_lps``: the treated tumour's centre in the baseline; the local refinement
    works in a box around where the global transform puts it in the follow-up.

    Issue 11: the start does not depend on where the studies lie in the scanner:
    :func:`followup.pipelines.registration.initialise.coarse_search` proposes ``STARTS`` distinct
    rigid starts (body mask, exhaustive translation and rotation search at ~8 mm), the first level's rigid
    refinement runs from all of them at once (multi-start), and the best by MI after it goes on
    to the finer rigid level, the affine stage and the local refinement, as before.
    ``global_search=False``: one start at the identity (the former behaviour).
    """
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    f_img, m_img = prepare(fixed), prepare(moving)
    levels = []  # pooled once, shared by the rigid and the affine stage
    for voxel_mm, iters, n_sample in GLOBAL_LEVELS:
        f_lvl, m_lvl = pool_level(f_img, voxel_mm), pool_level(m_img, voxel_mm)
        pts, vals = level_points(f_lvl, 0.05, None)
        levels.append((m_lvl, pts, vals, parzen_weights(vals), iters, n_sample))
    centre = fixed.centre_world()
    lesion_b = np.asarray(lesion_baseline_lps, float)
    m_first, pts0, vals0 = levels[0][:3]
    mi_before = matrix_mi(np.eye(4), pts0, vals0, m_first)
    search = coarse_search(f_img, m_img, STARTS if global_search else 1, seed,
                           identity_only=not global_search)
    bases = np.stack([c.matrix for c in search.candidates])
    best_start, start_spread = _multi_start(bases, centre, levels[0], lesion_b, gen)

    model = Transform(centre, affine=False, base=best_start)
    for m_lvl, pts, vals, w_fixed, iters, n_sample in levels[1:]:
        optimise(model, pts, vals, m_lvl, iters, n_sample, gen, w_fixed_all=w_fixed)
    model = Transform(centre, affine=True, base=model.numpy()[0])
    for m_lvl, pts, vals, w_fixed, iters, n_sample in levels:
        optimise(model, pts, vals, m_lvl, iters // 2, n_sample, gen, w_fixed_all=w_fixed)
    global_m = model.numpy()[0]
    m_last, pts, vals = levels[-1][:3]
    mi_after = matrix_mi(global_m, pts, vals, m_last)
    nmi_overlap, fov_overlap = overlap_nmi(global_m, pts, vals, m_last, moving)

    lesion_fu = inverse_point(global_m, lesion_b)
    reasons: list[str] = []
    local_m, ncc_before, ncc_after, nmi_local = _local_refinement(f_img, m_img, lesion_fu, global_m, gen,
                                                                  reasons)
    shift = float(np.linalg.norm((local_m[:3, :3] @ lesion_fu + local_m[:3, 3])
                                 - (global_m[:3, :3] @ lesion_fu + global_m[:3, 3])))
    scales = np.linalg.svd(global_m[:3, :3], compute_uv=False)
    figures = {
        "local_ncc": float(ncc_after),
        "local_nmi": float(nmi_local),
        "normalised_mi": nmi_overlap,
        "fov_overlap": fov_overlap,
        "mi_gain": float(mi_after - mi_before),
        "start_spread_mm": start_spread,
        "body_overlap": body_overlap(search, global_m),
        "local_correction_mm": shift,
        "max_scale_deviation": float(np.max(np.abs(scales - 1.0))),
        "coarse_candidates": float(search.n_scored),
    }
    reasons += quality_reasons(figures)
    lesion_final = inverse_point(local_m, lesion_b)
    ijk = fixed.world_to_voxel(lesion_final)
    if np.any(ijk < 0) or np.any(ijk > np.asarray(fixed.shape) - 1):
        reasons.append("the lesion maps outside the follow-up volume")
    return RegistrationResult(
        matrix=global_m, local_matrix=local_m,
        method=(f"global search ({search.n_scored} candidates at {search.voxel_mm:g} mm, "
                f"{len(bases)} starts) + " if global_search else "")
        + "rigid+affine (global MI, 6 and 3 mm) + local rigid (MI, 1.5 mm, "
          f"{2 * LOCAL_HALF_BOX_MM:g} mm box)",
        mi_before=float(mi_before), mi_after=float(mi_after),
        ncc_local_before=float(ncc_before), ncc_local_after=float(ncc_after),
        quality=Quality.POOR if reasons else Quality.GOOD, reasons=reasons, figures=figures,
    )

