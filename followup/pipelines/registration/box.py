"""Rigid alignment inside a box: the local refinement around the lesion and the within-study
motion of the post-contrast phases (``rigid_in_box``, ``rigid_in_box_batch``), and the box
helpers."""

from __future__ import annotations

import numpy as np
import torch

from followup.pipelines.registration.compute import single_threaded
from followup.pipelines.registration.metric import ncc_batch
from followup.pipelines.registration.optimise import optimise
from followup.pipelines.registration.sampling import Level, Prepared, level_points, pool_level, prepare
from followup.pipelines.registration.transform import Transform
from followup.volume import Volume

# Box levels read the moving image this far around the box's image: more than a box optimisation
# can move (50 Adam steps of at most ~0.3 mm and ~0.2 degree each).
MOVING_MARGIN_MM = 30.0


def box_around(centre: np.ndarray, half_mm: float) -> tuple[np.ndarray, np.ndarray]:
    return centre - half_mm, centre + half_mm


def mapped_box(box: tuple[np.ndarray, np.ndarray], matrix: np.ndarray,
               margin_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """Axis-aligned LPS box around the image of ``box`` under ``matrix``, widened by a margin."""
    corners = np.array([[x, y, z] for x in (box[0][0], box[1][0]) for y in (box[0][1], box[1][1])
                        for z in (box[0][2], box[1][2])])
    mapped = corners @ matrix[:3, :3].T + matrix[:3, 3]
    return mapped.min(axis=0) - margin_mm, mapped.max(axis=0) + margin_mm


@single_threaded
def rigid_in_box_batch(fixed: Volume | Prepared, movings: list[Volume | Prepared],
                       centre_lps: np.ndarray, half_box_mm: float, level: tuple[float, int, int],
                       base: np.ndarray | None = None, gen: torch.Generator | None = None,
                       ncc_exclude_mm: float = 0.0,
                       ) -> list[tuple[np.ndarray, float, float, float]] | None:
    """Rigid alignment (MI) of each of ``movings`` to ``fixed`` inside a box around ``centre_lps``,
    all at once; each result is what :func:`rigid_in_box` gives for that moving image alone.

    The moving images must share one voxel grid. Starts from ``base`` (fixed LPS -> moving LPS).
    Returns per moving image (matrix, NCC at identity, NCC at ``base``, NCC after), or None when
    the box holds too little tissue to align on. The NCCs leave out the sphere of
    ``ncc_exclude_mm`` around ``centre_lps`` (0: none); the alignment itself uses the whole box.
    """
    gen = gen or torch.Generator().manual_seed(0)
    f_img = fixed if isinstance(fixed, Prepared) else prepare(fixed)
    m_imgs = [m if isinstance(m, Prepared) else prepare(m) for m in movings]
    base = np.eye(4) if base is None else base
    voxel_mm, iters, n_sample = level
    centre = np.asarray(centre_lps, dtype=float)
    box = box_around(centre, half_box_mm)
    f_lvl = pool_level(f_img, voxel_mm, box)
    m_box = mapped_box(box, base, MOVING_MARGIN_MM)
    m_lvls = [pool_level(m, voxel_mm, m_box) for m in m_imgs]
    shapes = {tuple(lv.image.shape) for lv in m_lvls}
    if len(shapes) > 1 or any(not np.allclose(lv.affine, m_lvls[0].affine) for lv in m_lvls):
        raise ValueError("the moving images of a batch must share one voxel grid")
    m_lvl = Level(torch.cat([lv.image for lv in m_lvls], dim=0), m_lvls[0].affine)
    pts, vals = level_points(f_lvl, 0.02, box)
    if pts.shape[0] < 500:
        return None
    b = len(movings)
    dev = pts.device
    eye = torch.eye(4, device=dev).expand(b, 4, 4)
    base_t = torch.from_numpy(np.asarray(base, dtype=float)).float().to(dev).expand(b, 4, 4)
    n_pts, n_vals = outside_sphere(pts, vals, centre, ncc_exclude_mm)
    ncc_identity = ncc_batch(eye, n_pts, n_vals, m_lvl)
    ncc_base = ncc_batch(base_t, n_pts, n_vals, m_lvl)
    model = Transform(centre, affine=False, base=base, batch=b)
    optimise(model, pts, vals, m_lvl, iters, n_sample, gen, lr=0.03)
    with torch.no_grad():
        final = model.matrix()
    ncc_after = ncc_batch(final, n_pts, n_vals, m_lvl)
    matrices = final.cpu().numpy().astype(float)
    return [(matrices[i], ncc_identity[i], ncc_base[i], ncc_after[i]) for i in range(b)]


def outside_sphere(pts: torch.Tensor, vals: torch.Tensor, centre: np.ndarray,
                   radius_mm: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The sample points (and values) farther than ``radius_mm`` from ``centre`` (all when the
    radius is 0 or would leave fewer than 500)."""
    if radius_mm <= 0:
        return pts, vals
    c = torch.as_tensor(np.asarray(centre, dtype=np.float32), device=pts.device)
    keep = torch.linalg.norm(pts - c, dim=1) > radius_mm
    if int(keep.sum()) < 500:
        return pts, vals
    return pts[keep], vals[keep]


def rigid_in_box(fixed: Volume | Prepared, moving: Volume | Prepared, centre_lps: np.ndarray,
                 half_box_mm: float, level: tuple[float, int, int], base: np.ndarray | None = None,
                 gen: torch.Generator | None = None, ncc_exclude_mm: float = 0.0,
                 ) -> tuple[np.ndarray, float, float, float] | None:
    """Rigid alignment (MI) of ``moving`` to ``fixed`` inside a box around ``centre_lps``.

    Starts from ``base`` (fixed LPS -> moving LPS). Returns (matrix, NCC at identity, NCC at
    ``base``, NCC after), or None when the box holds too little tissue to align on.
    """
    out = rigid_in_box_batch(fixed, [moving], centre_lps, half_box_mm, level, base, gen, ncc_exclude_mm)
    return None if out is None else out[0]

