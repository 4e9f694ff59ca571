"""Global initialisation of the follow-up -> baseline registration, independent of where the two
studies start (issue 11): the patient may lie 30 mm and 15 degrees away from where she lay at the
baseline, the fields of view and slice orientations may differ, so the identity (both studies in
scanner LPS) is not a safe start for a local optimiser, whose capture range is ~10-15 mm.

1. **Body mask** on a coarse level (~8 mm voxels) of each pre-contrast volume: normalised intensity
   above background, largest connected component. Its centroid gives one more translation to try
   (the body's shift, meaningful when both fields of view hold the whole body in the slab).
2. **Exhaustive translation search** at identity rotation over a grid of ``SEARCH_HALF_MM`` (step
   ``SEARCH_STEP_MM``) around the identity, plus the centroid shift, scored by the same Parzen MI the
   refinement maximises, on ``COARSE_POINTS`` body voxels of the follow-up, vectorised (7^3 grid
   translations + 27 around the centroid shift; with steps 3 and 4, ~560 candidates, ~0.2 s).
   Whatever the grid misses by half a step (5 mm) the refinement's capture range covers.
3. **Rotation search**: the best few distinct translations, each under ``ROTATIONS`` (0 and
   +-``SEARCH_ROT_DEG`` about each axis, all 27 combinations) about the follow-up body centroid.
4. **Half-step translations** (26 neighbours at ``SEARCH_STEP_MM / 2``) around the best few.
5. The best ``starts`` distinct candidates are returned, best first; :func:`~.driver.register` refines each
   (multi-start) and keeps the best by the refined similarity.

Candidates are 4x4 matrices **follow-up LPS -> baseline LPS** like the registration's result.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage

from followup.pipelines.registration.metric import mutual_information, parzen_weights
from followup.pipelines.registration.sampling import Level, Prepared, interpolate, pool_level, sample

COARSE_VOXEL_MM = 8.0
BODY_THRESHOLD = 0.05  # normalised intensity (1st..99.5th percentile -> 0..1) above background
SEARCH_HALF_MM = 30.0  # translation grid half-width: the largest repositioning expected per axis
SEARCH_STEP_MM = 10.0  # well inside the capture range of the refinement's first level
SEARCH_ROT_DEG = 10.0
COARSE_POINTS = 1500
CHUNK = 96  # candidates scored at once (memory: CHUNK x COARSE_POINTS x bins floats)
TRANSLATIONS_KEPT = 4  # distinct translations whose rotations are searched
DISTINCT_MM = 12.0  # two candidates are distinct when they move the body centre this far apart


@dataclass(frozen=True)
class Candidate:
    matrix: np.ndarray  # 4x4 follow-up LPS -> baseline LPS
    score: float  # coarse MI


@dataclass(frozen=True)
class BodyMask:
    mask: np.ndarray  # (D, H, W) bool on the coarse level's grid
    centre: np.ndarray  # LPS centroid
    axes: np.ndarray  # 3x3, rows: principal axes (largest spread first)
    extent_mm: np.ndarray  # standard deviation along each axis


def body_mask(level) -> BodyMask:
    """Largest connected component of the voxels above background on a coarse level."""
    img = level.image[0, 0].detach().cpu().numpy()
    fg = img > BODY_THRESHOLD
    lab, n = ndimage.label(fg)
    if n > 1:
        sizes = np.bincount(lab.ravel())
        sizes[0] = 0
        fg = lab == int(np.argmax(sizes))
    kk, jj, ii = np.nonzero(fg)
    if kk.size < 10:
        return BodyMask(fg, level.affine[:3, 3].copy(), np.eye(3), np.zeros(3))
    ijk = np.stack([ii, jj, kk], 1).astype(float)
    pts = ijk @ level.affine[:3, :3].T + level.affine[:3, 3]
    centre = pts.mean(axis=0)
    evals, evecs = np.linalg.eigh(np.cov((pts - centre).T))
    order = np.argsort(evals)[::-1]
    return BodyMask(fg, centre, evecs[:, order].T, np.sqrt(np.maximum(evals[order], 0.0)))


def _rotation(deg: np.ndarray) -> np.ndarray:
    rx, ry, rz = np.radians(deg)
    cx, sx, cy, sy, cz, sz = np.cos(rx), np.sin(rx), np.cos(ry), np.sin(ry), np.cos(rz), np.sin(rz)
    mx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    my = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    mz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return mz @ my @ mx


def _matrix(rot: np.ndarray, t: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """x -> R (x - c) + c + t."""
    m = np.eye(4)
    m[:3, :3] = rot
    m[:3, 3] = centre + t - rot @ centre
    return m


ROTATIONS = [np.array(a, dtype=float) for a in itertools.product((-SEARCH_ROT_DEG, 0.0, SEARCH_ROT_DEG),
                                                                 repeat=3)]


def _score(matrices: np.ndarray, pts: torch.Tensor, w_fixed: torch.Tensor, moving) -> np.ndarray:
    """Parzen MI of each fixed LPS -> moving LPS matrix (B, 4, 4) on the given fixed points."""
    out = []
    n = pts.shape[0]
    for s in range(0, len(matrices), CHUNK):
        m = torch.from_numpy(matrices[s:s + CHUNK]).float().to(pts.device)
        warped = pts @ m[:, :3, :3].transpose(1, 2) + m[:, None, :3, 3]  # (b, N, 3)
        vals = sample(moving, warped.reshape(1, -1, 3)).reshape(len(m), n)
        out.append(mutual_information(parzen_weights(vals), w_fixed).cpu().numpy())
    return np.concatenate(out).astype(float)


def _distinct(cands: list[Candidate], probe: np.ndarray, keep: int) -> list[Candidate]:
    """Best-first candidates whose images of ``probe`` lie ``DISTINCT_MM`` apart."""
    chosen: list[Candidate] = []
    for c in sorted(cands, key=lambda c: -c.score):
        p = c.matrix[:3, :3] @ probe + c.matrix[:3, 3]
        if all(np.linalg.norm(p - (o.matrix[:3, :3] @ probe + o.matrix[:3, 3])) >= DISTINCT_MM
               for o in chosen):
            chosen.append(c)
            if len(chosen) == keep:
                break
    return chosen


@dataclass
class Search:
    candidates: list[Candidate]  # best first
    n_scored: int
    voxel_mm: float
    fixed_level: Level
    moving_level: Level
    fixed_body: BodyMask
    moving_body: BodyMask


def coarse_search(fixed_img: Prepared, moving_img: Prepared, starts: int = 3, seed: int = 0,
                  identity_only: bool = False) -> Search:
    """The best ``starts`` distinct follow-up -> baseline starts, best first.

    ``identity_only``: no search, the identity as the one start (the levels and masks are still
    made, for :func:`body_overlap`)."""
    f_lvl = pool_level(fixed_img, COARSE_VOXEL_MM)
    m_lvl = pool_level(moving_img, COARSE_VOXEL_MM)
    f_body, m_body = body_mask(f_lvl), body_mask(m_lvl)
    if identity_only:
        return Search([Candidate(np.eye(4), float("nan"))], 0, COARSE_VOXEL_MM, f_lvl, m_lvl,
                      f_body, m_body)
    dev = f_lvl.image.device
    kk, jj, ii = np.nonzero(f_body.mask)
    vals_all = f_lvl.image[0, 0].detach().cpu().numpy()[kk, jj, ii]
    if kk.size > COARSE_POINTS:
        pick = np.random.default_rng(seed).choice(kk.size, COARSE_POINTS, replace=False)
        kk, jj, ii, vals_all = kk[pick], jj[pick], ii[pick], vals_all[pick]
    ijk = np.stack([ii, jj, kk], 1).astype(float)
    pts_np = ijk @ f_lvl.affine[:3, :3].T + f_lvl.affine[:3, 3]
    pts = torch.from_numpy(pts_np).float().to(dev)
    w_fixed = parzen_weights(torch.from_numpy(vals_all.astype(np.float32)).to(dev))
    c = f_body.centre

    axis = np.arange(-SEARCH_HALF_MM, SEARCH_HALF_MM + 1e-6, SEARCH_STEP_MM)
    shifts = [np.array(t) for t in itertools.product(axis, axis, axis)]
    body_shift = m_body.centre - f_body.centre
    if np.all(np.abs(body_shift) < 2 * SEARCH_HALF_MM):  # the centroid shift and its neighbours
        shifts += [body_shift + np.array(d) * SEARCH_STEP_MM / 2
                   for d in itertools.product((-1, 0, 1), repeat=3)]
    eye = np.eye(3)
    mats = np.stack([_matrix(eye, t, c) for t in shifts])
    scores = _score(mats, pts, w_fixed, m_lvl)
    first = [Candidate(m, float(s)) for m, s in zip(mats, scores, strict=True)]
    best_t = _distinct(first, c, TRANSLATIONS_KEPT)
    # a translation-only candidate's matrix[:3, 3] is its translation
    rot_mats = np.stack([_matrix(_rotation(a), b.matrix[:3, 3], c)
                         for b in best_t for a in ROTATIONS])
    rot_scores = _score(rot_mats, pts, w_fixed, m_lvl)
    second = [Candidate(m, float(s)) for m, s in zip(rot_mats, rot_scores, strict=True)]
    # half-step translations around the best few (rotation kept)
    top = _distinct(first + second, c, starts)
    offsets = [np.array(d) * SEARCH_STEP_MM / 2 for d in itertools.product((-1, 0, 1), repeat=3)
               if any(d)]
    fine_mats = np.stack([_shifted(t.matrix, o) for t in top for o in offsets])
    fine_scores = _score(fine_mats, pts, w_fixed, m_lvl)
    third = [Candidate(m, float(s)) for m, s in zip(fine_mats, fine_scores, strict=True)]
    chosen = _distinct(first + second + third, c, starts)
    n_scored = len(first) + len(second) + len(third)
    return Search(chosen, n_scored, COARSE_VOXEL_MM, f_lvl, m_lvl, f_body, m_body)


def _shifted(matrix: np.ndarray, offset: np.ndarray) -> np.ndarray:
    out = matrix.copy()
    out[:3, 3] += offset
    return out


def body_overlap(search: Search, matrix: np.ndarray) -> float:
    """Dice of the follow-up body mask and the baseline body mask mapped by ``matrix`` (follow-up
    LPS -> baseline LPS), on the coarse follow-up grid, over the voxels that map inside the
    baseline's field of view (different fields of view do not count as disagreement)."""
    f_lvl, m_lvl = search.fixed_level, search.moving_level
    fmask = search.fixed_body.mask
    dev = f_lvl.image.device
    d, h, w = fmask.shape
    kk, jj, ii = np.meshgrid(np.arange(d), np.arange(h), np.arange(w), indexing="ij")
    ijk = np.stack([ii, jj, kk], -1).reshape(-1, 3).astype(float)
    lps = ijk @ f_lvl.affine[:3, :3].T + f_lvl.affine[:3, 3]
    mapped = lps @ matrix[:3, :3].T + matrix[:3, 3]
    m_ijk = mapped @ np.linalg.inv(m_lvl.affine)[:3, :3].T + np.linalg.inv(m_lvl.affine)[:3, 3]
    shape_ijk = np.array(search.moving_body.mask.shape[::-1])
    inside = np.all((m_ijk >= 0) & (m_ijk <= shape_ijk - 1), axis=1)
    mm = Level(torch.from_numpy(search.moving_body.mask.astype(np.float32))[None, None].to(dev),
               m_lvl.affine)
    warped = interpolate(mm, torch.from_numpy(m_ijk).float().to(dev)[None])[0].cpu().numpy() > 0.5
    a, b = fmask.reshape(-1)[inside], warped[inside]
    denom = a.sum() + b.sum()
    return float(2.0 * np.logical_and(a, b).sum() / denom) if denom else 0.0
