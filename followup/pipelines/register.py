"""Register the follow-up study to the baseline: rigid, then affine, then a local rigid refinement
around the treated lesion. Torch optimisation of MONAI's global mutual information (robust to the
contrast change between a tumour and an ablation zone), multi-resolution, on sampled voxels.

The result maps **follow-up LPS -> baseline LPS** (``matrix``) and its inverse maps the baseline
tumour and its margin into follow-up space: the follow-up images are never warped, so the lesion
cannot be "registered away". Pure: two ``Volume``s in, matrices and numbers out.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from monai.losses import GlobalMutualInformationLoss

from followup.volume import Volume

# Levels: (voxel size in mm for the pyramid, iterations, sampled voxels per iteration).
GLOBAL_LEVELS = ((6.0, 80, 6000), (3.0, 50, 8000))
LOCAL_LEVEL = (1.5, 50, 8000)
LOCAL_HALF_BOX_MM = 35.0
# Quality limits (checked on the synthetic set; see benchmarks/accuracy.py).
MIN_LOCAL_NCC = 0.55
MAX_SCALE_DEVIATION = 0.15
MAX_LOCAL_CORRECTION_MM = 10.0


@dataclass(frozen=True)
class RegistrationResult:
    matrix: np.ndarray  # 4x4 follow-up LPS -> baseline LPS (global affine)
    local_matrix: np.ndarray  # 4x4 follow-up LPS -> baseline LPS, refined around the lesion
    method: str
    mi_before: float
    mi_after: float
    ncc_local_before: float
    ncc_local_after: float
    quality: str  # "good" | "poor"
    reasons: list[str] = field(default_factory=list)

    def baseline_to_followup(self, lps: np.ndarray) -> np.ndarray:
        inv = np.linalg.inv(self.local_matrix)
        pts = np.atleast_2d(np.asarray(lps, dtype=float))
        return pts @ inv[:3, :3].T + inv[:3, 3]

    def to_json(self) -> dict:
        return {
            "method": self.method,
            "similarity_before": {"mutual_information": round(self.mi_before, 4),
                                  "local_ncc": round(self.ncc_local_before, 4)},
            "similarity_after": {"mutual_information": round(self.mi_after, 4),
                                 "local_ncc": round(self.ncc_local_after, 4)},
            "quality": self.quality,
            "quality_reasons": list(self.reasons),
            "followup_to_baseline_affine": np.round(self.local_matrix, 6).tolist(),
        }


@dataclass
class _Level:
    image: torch.Tensor  # (1, 1, D, H, W) normalised to [0, 1]
    affine: np.ndarray  # voxel (i, j, k) of the pooled grid -> LPS


def _tensor(vol: Volume) -> torch.Tensor:
    # data[i, j, k] -> (D=k, H=j, W=i), the layout torch's 3D ops expect.
    return torch.from_numpy(np.ascontiguousarray(vol.data.T, dtype=np.float32))[None, None]


def _normalise(t: torch.Tensor) -> torch.Tensor:
    """Map the 1st..99.5th intensity percentiles to [0, 1] (percentiles from ~200k voxels)."""
    flat = t.flatten()
    sample = flat[:: max(1, flat.numel() // 200000)]
    lo = torch.quantile(sample, 0.01)
    hi = torch.quantile(sample, 0.995)
    return ((t - lo) / torch.clamp(hi - lo, min=1e-6)).clamp(0.0, 1.0)


def _pool(vol: Volume, image: torch.Tensor, voxel_mm: float) -> _Level:
    """Block-average to about ``voxel_mm``; the pooled voxel centres keep their true position."""
    sp = vol.spacing
    stride = [max(1, int(round(voxel_mm / s))) for s in sp]  # along i, j, k
    kernel = (stride[2], stride[1], stride[0])
    pooled = F.avg_pool3d(image, kernel_size=kernel, stride=kernel) if max(stride) > 1 else image
    aff = vol.affine.copy()
    aff[:3, :3] = vol.affine[:3, :3] * np.array(stride, dtype=float)
    aff[:3, 3] = vol.affine[:3, :3] @ ((np.array(stride) - 1) / 2.0) + vol.affine[:3, 3]
    return _Level(pooled, aff)


def _grid_coords(level: _Level, pts: torch.Tensor) -> torch.Tensor:
    """LPS points (N, 3) -> grid_sample coordinates (1, 1, 1, N, 3) of ``level``."""
    inv = torch.from_numpy(np.linalg.inv(level.affine)).float()
    ijk = pts @ inv[:3, :3].T + inv[:3, 3]
    d, h, w = level.image.shape[2:]
    size = torch.tensor([w - 1, h - 1, d - 1], dtype=torch.float32).clamp(min=1)
    return (2.0 * ijk / size - 1.0)[None, None, None]


def _sample(level: _Level, pts: torch.Tensor) -> torch.Tensor:
    return F.grid_sample(level.image, _grid_coords(level, pts), mode="bilinear",
                         padding_mode="zeros", align_corners=True).reshape(1, -1)


def _euler(r: torch.Tensor) -> torch.Tensor:
    cx, cy, cz = torch.cos(r)
    sx, sy, sz = torch.sin(r)
    one, zero = torch.ones(()), torch.zeros(())
    rx = torch.stack([one, zero, zero, zero, cx, -sx, zero, sx, cx]).reshape(3, 3)
    ry = torch.stack([cy, zero, sy, zero, one, zero, -sy, zero, cy]).reshape(3, 3)
    rz = torch.stack([cz, -sz, zero, sz, cz, zero, zero, zero, one]).reshape(3, 3)
    return rz @ ry @ rx


class _Transform(torch.nn.Module):
    """x -> c + A (x - c) + t composed after a fixed 4x4 ``base`` (applied last).

    Parameters are scaled so one Adam step moves rotations by ~0.5 degree, translations by ~0.5 mm.
    """

    def __init__(self, centre: np.ndarray, affine: bool, base: np.ndarray | None = None) -> None:
        super().__init__()
        self.c = torch.tensor(centre, dtype=torch.float32)
        self.rot = torch.nn.Parameter(torch.zeros(3))
        self.trans = torch.nn.Parameter(torch.zeros(3))
        self.lin = torch.nn.Parameter(torch.zeros(9)) if affine else None
        self.base = torch.from_numpy(np.eye(4) if base is None else base).float()

    def matrix(self) -> torch.Tensor:
        a = _euler(self.rot * 0.1)
        if self.lin is not None:
            a = a @ (torch.eye(3) + 0.02 * self.lin.reshape(3, 3))
        m = torch.eye(4)
        m = m.clone()
        m[:3, :3] = a
        m[:3, 3] = self.c + self.trans * 10.0 - a @ self.c
        return self.base @ m

    def forward(self, pts: torch.Tensor) -> torch.Tensor:
        m = self.matrix()
        return pts @ m[:3, :3].T + m[:3, 3]


def _level_points(level: _Level, mask_threshold: float, box: tuple[np.ndarray, np.ndarray] | None):
    """LPS coordinates and intensities of the fixed level's voxels inside the body (and box)."""
    img = level.image[0, 0]
    kk, jj, ii = torch.meshgrid(*[torch.arange(s) for s in img.shape], indexing="ij")
    ijk = torch.stack([ii, jj, kk], -1).reshape(-1, 3).float()
    aff = torch.from_numpy(level.affine).float()
    pts = ijk @ aff[:3, :3].T + aff[:3, 3]
    vals = img.reshape(-1)
    keep = vals > mask_threshold
    if box is not None:
        lo, hi = (torch.from_numpy(b).float() for b in box)
        keep &= ((pts >= lo) & (pts <= hi)).all(dim=1)
    return pts[keep], vals[keep]


def _optimise(model: _Transform, fixed_pts, fixed_vals, moving: _Level, iterations: int,
              n_sample: int, gen: torch.Generator, lr: float = 0.05) -> None:
    loss_fn = GlobalMutualInformationLoss(num_bins=32)
    opt = torch.optim.Adam([p for p in model.parameters()], lr=lr)
    n = fixed_pts.shape[0]
    for it in range(iterations):
        idx = torch.randint(0, n, (min(n_sample, n),), generator=gen)
        warped = _sample(moving, model(fixed_pts[idx]))
        loss = loss_fn(warped, fixed_vals[idx][None])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if it == int(iterations * 0.7):
            for g in opt.param_groups:
                g["lr"] = lr * 0.3


def _mi(matrix: np.ndarray, fixed_pts, fixed_vals, moving: _Level, n: int = 60000) -> float:
    idx = torch.randperm(fixed_pts.shape[0], generator=torch.Generator().manual_seed(7))[:n]
    m = torch.from_numpy(matrix).float()
    with torch.no_grad():
        warped = _sample(moving, fixed_pts[idx] @ m[:3, :3].T + m[:3, 3])
        return float(-GlobalMutualInformationLoss(num_bins=32)(warped, fixed_vals[idx][None]))


def _ncc(matrix: np.ndarray, fixed_pts, fixed_vals, moving: _Level) -> float:
    m = torch.from_numpy(matrix).float()
    with torch.no_grad():
        w = _sample(moving, fixed_pts @ m[:3, :3].T + m[:3, 3])[0]
    a = fixed_vals - fixed_vals.mean()
    b = w - w.mean()
    return float((a * b).sum() / torch.sqrt((a * a).sum() * (b * b).sum()).clamp(min=1e-9))


def rigid_in_box(fixed: Volume, moving: Volume, centre_lps: np.ndarray, half_box_mm: float,
                 level: tuple[float, int, int], base: np.ndarray | None = None,
                 gen: torch.Generator | None = None,
                 images: tuple[torch.Tensor, torch.Tensor] | None = None,
                 ) -> tuple[np.ndarray, float, float, float] | None:
    """Rigid alignment (MI) of ``moving`` to ``fixed`` inside a box around ``centre_lps``.

    Starts from ``base`` (fixed LPS -> moving LPS). Returns (matrix, NCC at identity, NCC at
    ``base``, NCC after), or None when the box holds too little tissue to align on.
    """
    gen = gen or torch.Generator().manual_seed(0)
    f_img, m_img = images or (_normalise(_tensor(fixed)), _normalise(_tensor(moving)))
    base = np.eye(4) if base is None else base
    voxel_mm, iters, n_sample = level
    f_lvl, m_lvl = _pool(fixed, f_img, voxel_mm), _pool(moving, m_img, voxel_mm)
    centre = np.asarray(centre_lps, dtype=float)
    pts, vals = _level_points(f_lvl, 0.02, (centre - half_box_mm, centre + half_box_mm))
    if pts.shape[0] < 500:
        return None
    ncc_identity = _ncc(np.eye(4), pts, vals, m_lvl)
    ncc_base = _ncc(base, pts, vals, m_lvl)
    model = _Transform(centre, affine=False, base=base)
    _optimise(model, pts, vals, m_lvl, iters, n_sample, gen, lr=0.03)
    matrix = model.matrix().detach().numpy().astype(float)
    return matrix, ncc_identity, ncc_base, _ncc(matrix, pts, vals, m_lvl)


def register(fixed: Volume, moving: Volume, lesion_baseline_lps: np.ndarray,
             seed: int = 0) -> RegistrationResult:
    """Register follow-up (``fixed``) to baseline (``moving``) pre-contrast volumes.

    ``lesion_baseline_lps``: the treated tumour's centre in the baseline; the local refinement
    works in a box around where the global transform puts it in the follow-up.
    """
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    f_img = _normalise(_tensor(fixed))
    m_img = _normalise(_tensor(moving))
    centre = fixed.centre_world()
    model = _Transform(centre, affine=False)
    mi_before = None
    for stage_affine in (False, True):
        if stage_affine:
            rigid = model.matrix().detach().numpy().astype(float)
            model = _Transform(centre, affine=True, base=rigid)
        for voxel_mm, iters, n_sample in GLOBAL_LEVELS:
            f_lvl, m_lvl = _pool(fixed, f_img, voxel_mm), _pool(moving, m_img, voxel_mm)
            pts, vals = _level_points(f_lvl, 0.05, None)
            if mi_before is None:
                mi_before = _mi(np.eye(4), pts, vals, m_lvl)
            _optimise(model, pts, vals, m_lvl, iters if not stage_affine else iters // 2,
                      n_sample, gen)
    global_m = model.matrix().detach().numpy().astype(float)
    mi_after = _mi(global_m, pts, vals, m_lvl)

    # Local rigid refinement in a box around the lesion's position in the follow-up.
    inv = np.linalg.inv(global_m)
    lesion_fu = inv[:3, :3] @ np.asarray(lesion_baseline_lps, float) + inv[:3, 3]
    reasons: list[str] = []
    local = rigid_in_box(fixed, moving, lesion_fu, LOCAL_HALF_BOX_MM, LOCAL_LEVEL, base=global_m,
                         gen=gen, images=(f_img, m_img))
    local_m, ncc_before, ncc_after = global_m, float("nan"), float("nan")
    if local is None:
        reasons.append("too little tissue around the lesion's mapped position for a local check")
    else:
        local_m, ncc_before, ncc_global, ncc_after = local
        if ncc_after < ncc_global:  # keep the better of the two around the lesion
            local_m, ncc_after = global_m, ncc_global
        if ncc_after < MIN_LOCAL_NCC:
            reasons.append(f"low similarity around the lesion after registration "
                           f"(NCC {ncc_after:.2f} < {MIN_LOCAL_NCC})")
    shift = np.linalg.norm((local_m[:3, :3] @ lesion_fu + local_m[:3, 3])
                           - (global_m[:3, :3] @ lesion_fu + global_m[:3, 3]))
    if shift > MAX_LOCAL_CORRECTION_MM:
        reasons.append(f"local refinement moved the lesion by {shift:.1f} mm (> "
                       f"{MAX_LOCAL_CORRECTION_MM:g} mm): global and local alignment disagree")
    scales = np.linalg.svd(global_m[:3, :3], compute_uv=False)
    if np.any(np.abs(scales - 1.0) > MAX_SCALE_DEVIATION):
        reasons.append(f"implausible scaling {np.round(scales, 2).tolist()} in the affine stage")
    if mi_after <= mi_before:
        reasons.append(f"mutual information did not improve ({mi_before:.3f} -> {mi_after:.3f})")
    lesion_final = np.linalg.inv(local_m)[:3, :3] @ np.asarray(lesion_baseline_lps, float) \
        + np.linalg.inv(local_m)[:3, 3]
    ijk = fixed.world_to_voxel(lesion_final)
    if np.any(ijk < 0) or np.any(ijk > np.asarray(fixed.shape) - 1):
        reasons.append("the lesion maps outside the follow-up volume")
    return RegistrationResult(
        matrix=global_m, local_matrix=local_m,
        method="rigid+affine (global MI, 6 and 3 mm) + local rigid (MI, 1.5 mm, "
               f"{2 * LOCAL_HALF_BOX_MM:g} mm box)",
        mi_before=float(mi_before), mi_after=float(mi_after),
        ncc_local_before=float(ncc_before), ncc_local_after=float(ncc_after),
        quality="poor" if reasons else "good", reasons=reasons,
    )
