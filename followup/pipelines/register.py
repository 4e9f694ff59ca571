"""Register the follow-up study to the baseline: rigid, then affine, then a local rigid refinement
around the treated lesion. Torch optimisation of a global mutual information (Gaussian Parzen
windows, MONAI's formulation; robust to the contrast change between a tumour and an ablation zone),
multi-resolution, on sampled voxels.

The result maps **follow-up LPS -> baseline LPS** (``matrix``) and its inverse maps the baseline
tumour and its margin into follow-up space: the follow-up images are never warped, so the lesion
cannot be "registered away". Pure: two ``Volume``s in, matrices and numbers out.

Speed (issue 7): intensities are normalised with percentiles of the whole volume but only the
voxels a level reads are normalised and pooled, in slabs (no full-size normalised copy); levels are
pooled once and shared by the rigid and affine stages; box levels (local refinement, within-study
motion) crop the volume first; the fixed image's Parzen weights are computed once per level; the
few-parameter Adam is written out (torch.optim pulls in torch._dynamo, ~1 s of import; MONAI's
loss module pulls in ~1 s more); trilinear sampling and the MI have their gradients written out
(``_Trilinear``, ``_SampledMI``: the same values and gradients as ``grid_sample`` and MONAI's loss
to float rounding, several times cheaper than autograd's chain and torch's CPU 3D grid sampler);
the CPU work runs on one thread (``_one_cpu_thread``). Several moving images against one fixed
image (the post-contrast phases) are optimised as one batch: the loss is a sum of independent terms
and Adam is element-wise, so each transform follows the path it would follow alone. Runs on CUDA
when present, else on the CPU, with the same code.

Capture range (issue 11): the start no longer depends on where the two studies lie in the scanner.
:mod:`followup.pipelines.initialise` searches translations and rotations exhaustively at ~8 mm
(body mask, a few hundred candidates scored by the same MI in one vectorised pass); the first
level's rigid refinement runs from the best ``STARTS`` distinct candidates at once and the best by
MI after it goes on. The quality label reads figures that separate converged from failed
registrations (``RegistrationResult.figures``, in ``to_json()`` as ``quality_figures``): local NCC
around the lesion, MI normalised by the follow-up's entropy over the part of it inside the
baseline's field of view, the disagreement at the lesion between starts of nearly equal MI, the
local correction and the affine's scaling; the body-mask overlap is reported, not used.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from functools import lru_cache, wraps
from typing import TypeVar

import numpy as np
import torch
import torch.nn.functional as F

from followup.volume import Volume

# Levels: (voxel size in mm for the pyramid, iterations, sampled voxels per iteration).
GLOBAL_LEVELS = ((6.0, 80, 6000), (3.0, 50, 8000))
LOCAL_LEVEL = (1.5, 50, 8000)
LOCAL_HALF_BOX_MM = 35.0
# Quality limits. Calibrated (issue 11) on 100 small synthetic registrations (seeds 5000-5011,
# 5020-5023)
# (repositioned 0-45 mm / 0-15 deg, axial vs sagittal, another patient's baseline, identity
# starts that fail): local NCC after was 0.79-0.94 when the tumour-centre error was < 2 mm
# (83 cases) and -0.10-0.33 when it was > 5 mm (17); normalised MI overlaps (0.20-0.44 vs
# 0.02-0.34) and only catches gross failures; start spread <= 0.4 mm when converged.
# Recalibrated with the treated region left out of the NCC (NCC_EXCLUDE_RADIUS_MM) on the wide
# tuning cases (seeds 70000-70039: our 37 converged alignments and 74 made to fail by 4-30 mm /
# 0-15 deg, `benchmarks/accuracy.py` table c): converged p5 0.76 (one outlier 0.32), failed p90
# 0.59; at 0.70, 1 false alarm of 37 and 1 miss of 74 (error 4-8 mm), against 1 and 10 at 0.55
# with the whole box.
MIN_LOCAL_NCC = 0.70  # no longer judges (see MIN_LOCAL_NMI); kept as the figure's reference
# The NCC assumes one contrast: between a fat-suppressed study and one without fat suppression (fat
# dark in one, the brightest tissue in the other; 40 % of our generator's clinical pairs, about 42 %
# of the independent simulator's) it is negative at a perfect alignment, and it called 21 of 50
# converged alignments of the independent simulator poor. The alignment around the lesion is judged
# by the normalised MI of the same points instead (MI / entropy of the follow-up's intensities), which
# does not care which tissue is bright. Calibrated on tuning seeds 70200-70223 (our wide generator,
# the follow-up with and without fat suppression; 21 converged alignments, 73 made to fail by 4-30 mm /
# 0-15 deg): converged 0.088 (one, also flagged by the global MI), then 0.126-0.36; failed
# 0.013-0.117. At 0.11, with the global test below: 1 false alarm of 21, 0 misses of 73.
MIN_LOCAL_NMI = 0.11
# The local NCC that judges the alignment leaves out a sphere of this radius around the lesion: the
# treatment changed it by design (tumour in the baseline, a cavity with its rim in the follow-up:
# tumour + 2 x 10 mm margin, zones overshooting to ~55 mm across, Kawamoto 2021), and its change is
# not misalignment. The surrounding tissue in the 70 mm box must still match.
NCC_EXCLUDE_RADIUS_MM = 25.0
MIN_NORMALISED_MI = 0.12
MAX_START_SPREAD_MM = 10.0
MAX_SCALE_DEVIATION = 0.15
MAX_LOCAL_CORRECTION_MM = 10.0
# Global initialisation (issue 11): starts refined from the coarse search; a refined start whose MI
# is within RIVAL_MI of the best one's is a rival, and rivals must agree at the lesion.
STARTS = 3
RIVAL_MI = 0.05
# Box levels read the moving image this far around the box's image: more than a box optimisation
# can move (50 Adam steps of at most ~0.3 mm and ~0.2 degree each).
MOVING_MARGIN_MM = 30.0
NUM_BINS = 32
NORMALISE_SAMPLE = 200000  # voxels the intensity percentiles are taken from
SLAB_VOXELS = 4 << 20  # voxels normalised at once when a level is pooled


@lru_cache(maxsize=1)
def compute_device() -> torch.device:
    """CUDA when a GPU is present, else the CPU: the same code runs on both."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


_F = TypeVar("_F", bound=Callable)


@contextmanager
def _one_cpu_thread() -> Iterator[None]:
    """One intra-op CPU thread while registering. Each iteration is a few dozen operations on
    ~8000 samples: splitting them between threads gains little, and when the cores are busy
    (other analyses, a worker beside this one) OpenMP's threads wait on each other: a small
    registration measured 27 s of CPU with 2 threads on 2 loaded cores against 1.2 s with one.
    It also makes results independent of the machine's core count."""
    before = torch.get_num_threads()
    if before != 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if before != 1:
            torch.set_num_threads(before)


def _single_threaded(fn: _F) -> _F:
    @wraps(fn)
    def inner(*args, **kwargs):
        with _one_cpu_thread():
            return fn(*args, **kwargs)
    return inner  # type: ignore[return-value]


class Quality(StrEnum):
    """Whether a registration is trusted (``good``) or failed the quality rule (``poor``)."""

    GOOD = "good"
    POOR = "poor"


@dataclass(frozen=True)
class RegistrationResult:
    matrix: np.ndarray  # 4x4 follow-up LPS -> baseline LPS (global affine)
    local_matrix: np.ndarray  # 4x4 follow-up LPS -> baseline LPS, refined around the lesion
    method: str
    mi_before: float
    mi_after: float
    ncc_local_before: float
    ncc_local_after: float
    quality: Quality
    reasons: list[str] = field(default_factory=list)
    # the numbers the quality rule reads (see quality_reasons()); NaN -> null in to_json()
    figures: dict[str, float] = field(default_factory=dict)

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
            "quality": str(self.quality),
            "quality_reasons": list(self.reasons),
            "quality_figures": {k: (round(float(v), 4) if math.isfinite(float(v)) else None)
                                for k, v in self.figures.items()},
            "followup_to_baseline_affine": np.round(self.local_matrix, 6).tolist(),
        }


# ----------------------------------------------------------------------------- images and levels


@dataclass
class Prepared:
    """A volume ready to be pooled: its (k, j, i) array and its intensity normalisation, which maps
    the whole volume's 1st..99.5th percentiles to [0, 1] whatever part of it a level reads."""

    vol: Volume
    raw: np.ndarray  # (D=k, H=j, W=i) view of vol.data
    lo: torch.Tensor
    scale: torch.Tensor


@dataclass
class _Level:
    image: torch.Tensor  # (1, 1, D, H, W) normalised to [0, 1], on the compute device
    affine: np.ndarray  # voxel (i, j, k) of the pooled grid -> LPS
    inv: torch.Tensor = field(init=False)  # LPS -> voxel, 4x4 on the compute device
    # (B, D + 4, H + 4, W + 4): the image inside 2 voxels of zeros, for _Trilinear
    padded: torch.Tensor = field(init=False)

    def __post_init__(self) -> None:
        self.inv = torch.from_numpy(np.linalg.inv(self.affine)).float().to(self.image.device)
        self.padded = F.pad(self.image[:, 0], (PAD,) * 6)


def prepare(vol: Volume) -> Prepared:
    """Percentiles from ~200k voxels taken at a fixed stride of the (k, j, i) C-order voxels."""
    raw = vol.data.T
    n = raw.size
    step = max(1, n // NORMALISE_SAMPLE)
    if raw.flags.c_contiguous:
        sample = raw.reshape(-1)[::step]
    else:
        sample = raw[np.unravel_index(np.arange(0, n, step), raw.shape)]
    sample = np.array(sample, dtype=np.float32)
    lo, hi = _quantile(sample, 0.01), _quantile(sample, 0.995)
    return Prepared(vol, raw, lo, torch.clamp(hi - lo, min=1e-6))


def _quantile(x: np.ndarray, q: float) -> torch.Tensor:
    """``torch.quantile(x, q)`` (linear interpolation, float32 ranks), bit for bit, from a
    partition instead of a full sort (17x faster on 200k values)."""
    n = x.size
    rank = torch.tensor(q, dtype=torch.float32) * (n - 1)
    below = int(rank)
    above = min(below + 1, n - 1)
    part = np.partition(x, (below, above))
    return torch.lerp(torch.tensor(part[below]), torch.tensor(part[above]), rank - below)


def _strides(vol: Volume, voxel_mm: float) -> np.ndarray:
    return np.array([max(1, round(float(voxel_mm / s))) for s in vol.spacing])  # along i, j, k


def _pooled_region(vol: Volume, stride: np.ndarray, box: tuple[np.ndarray, np.ndarray] | None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Voxel index range [lo, hi) (i, j, k) of the whole pooling blocks covering an LPS box."""
    n = np.asarray(vol.shape)
    full = (n // stride) * stride
    if box is None:
        return np.zeros(3, dtype=int), full
    corners = np.array([[b[0][0] if a == 0 else b[1][0], b[0][1] if c == 0 else b[1][1],
                         b[0][2] if d == 0 else b[1][2]]
                        for b in (box,) for a in (0, 1) for c in (0, 1) for d in (0, 1)])
    ijk = vol.world_to_voxel(corners)
    lo = np.floor(ijk.min(axis=0)).astype(int) - stride
    hi = np.ceil(ijk.max(axis=0)).astype(int) + 1 + stride
    lo = np.clip((lo // stride) * stride, 0, full)
    hi = np.clip(-(-hi // stride) * stride, 0, full)
    return lo, np.maximum(hi, lo)


def pool_level(img: Prepared, voxel_mm: float, box: tuple[np.ndarray, np.ndarray] | None = None
               ) -> _Level:
    """Normalise and block-average to about ``voxel_mm`` the blocks covering ``box`` (LPS corners,
    None: the whole volume). Blocks start at multiples of the stride, so a box level holds exactly
    the values of the whole-volume level there; the pooled voxel centres keep their true position."""
    vol = img.vol
    stride = _strides(vol, voxel_mm)
    lo, hi = _pooled_region(vol, stride, box)
    dev = compute_device()
    kernel = (int(stride[2]), int(stride[1]), int(stride[0]))
    lo_t, scale = img.lo.to(dev), img.scale.to(dev)
    plane = max(1, int((hi[0] - lo[0]) * (hi[1] - lo[1])))
    slab = max(1, SLAB_VOXELS // (plane * kernel[0])) * kernel[0]
    parts = []
    for k0 in range(int(lo[2]), int(hi[2]), slab):
        k1 = min(k0 + slab, int(hi[2]))
        block = np.ascontiguousarray(img.raw[k0:k1, lo[1]:hi[1], lo[0]:hi[0]], dtype=np.float32)
        t = torch.from_numpy(block).to(dev)[None, None]
        t = ((t - lo_t) / scale).clamp(0.0, 1.0)
        parts.append(F.avg_pool3d(t, kernel_size=kernel, stride=kernel) if max(kernel) > 1 else t)
    if not parts:
        parts = [torch.zeros((1, 1, 0, 0, 0), device=dev)]
    image = torch.cat(parts, dim=2) if len(parts) > 1 else parts[0]
    aff = vol.affine.copy()
    aff[:3, :3] = vol.affine[:3, :3] * stride.astype(float)
    aff[:3, 3] = vol.affine[:3, :3] @ (lo + (stride - 1) / 2.0) + vol.affine[:3, 3]
    return _Level(image.contiguous(), aff)


# corner offsets (dz, dy, dx) in the order of a (2, 2, 2) [z, y, x] block
_CORNERS = [(dz, dy, dx) for dz in (0, 1) for dy in (0, 1) for dx in (0, 1)]
PAD = 2  # zero voxels around a level's image: indices clamped into them read zeros


class _Trilinear(torch.autograd.Function):
    """Trilinear interpolation at fractional voxel indices (B, N, 3) in (i, j, k) order of images
    given with ``PAD`` voxels of zeros around them (B, D + 2 PAD, H + 2 PAD, W + 2 PAD), zero
    outside: ``grid_sample(..., align_corners=True, padding_mode='zeros')`` without the normalised
    coordinates, with the gradient with respect to the indices written out (torch's 3D grid
    sampler on the CPU is a scalar loop: most of an iteration's time). A corner cell beyond the
    image is clamped into the zero border, where every corner reads zero (value and gradient 0)."""

    @staticmethod
    def forward(ctx, padded: torch.Tensor, ijk: torch.Tensor) -> torch.Tensor:
        b, dp, hp, wp = padded.shape
        n = ijk.shape[1]
        base = torch.floor(ijk)
        f = ijk - base  # (B, N, 3)
        upper = torch.tensor([wp - 2 * PAD, hp - 2 * PAD, dp - 2 * PAD], device=ijk.device)
        b0 = torch.minimum(base.long().clamp_(min=-PAD), upper) + PAD
        offsets = torch.tensor([(dz * hp + dy) * wp + dx for dz, dy, dx in _CORNERS],
                               device=ijk.device)
        flat = ((b0[..., 2] * hp + b0[..., 1]) * wp + b0[..., 0])[..., None] + offsets  # (B, N, 8)
        v = torch.gather(padded.reshape(b, -1), 1, flat.reshape(b, n * 8)).reshape(b, n, 2, 2, 2)
        fx, fy, fz = f[..., 0, None, None], f[..., 1, None], f[..., 2]
        cx = v[..., 0] + (v[..., 1] - v[..., 0]) * fx  # (B, N, 2, 2) [z, y]
        dcy = cx[..., 1] - cx[..., 0]
        cy = cx[..., 0] + dcy * fy  # (B, N, 2) [z]
        gz = cy[..., 1] - cy[..., 0]
        out = cy[..., 0] + gz * fz
        if ijk.requires_grad:
            gy = dcy[..., 0] + (dcy[..., 1] - dcy[..., 0]) * fz
            dx = v[..., 1] - v[..., 0]  # (B, N, 2, 2) [z, y]
            dxz = dx[..., 0] + (dx[..., 1] - dx[..., 0]) * fy
            gx = dxz[..., 0] + (dxz[..., 1] - dxz[..., 0]) * fz
            ctx.save_for_backward(torch.stack([gx, gy, gz], -1))
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        (g,) = ctx.saved_tensors
        return None, g * grad_out[..., None]


def _voxel_coords(level: _Level, pts: torch.Tensor) -> torch.Tensor:
    """LPS points (B, N, 3) -> fractional (i, j, k) indices of ``level``."""
    inv = level.inv
    return pts @ inv[:3, :3].T + inv[:3, 3]


def _interpolate(level: _Level, ijk: torch.Tensor) -> torch.Tensor:
    """Values (B, N) of ``level`` (batch of 1 or B images) at voxel indices (B, N, 3)."""
    image = level.padded
    if image.shape[0] != ijk.shape[0]:
        image = image.expand(ijk.shape[0], *image.shape[1:])
    return _Trilinear.apply(image, ijk)


def _sample(level: _Level, pts: torch.Tensor) -> torch.Tensor:
    """Values (B, N) of ``level`` (batch of 1 or B images) at LPS points (B, N, 3)."""
    return _interpolate(level, _voxel_coords(level, pts))


def _level_points(level: _Level, mask_threshold: float, box: tuple[np.ndarray, np.ndarray] | None):
    """LPS coordinates and intensities of the fixed level's voxels inside the body (and box)."""
    img = level.image[0, 0]
    dev = img.device
    kk, jj, ii = torch.meshgrid(*[torch.arange(s, device=dev) for s in img.shape], indexing="ij")
    ijk = torch.stack([ii, jj, kk], -1).reshape(-1, 3).float()
    aff = torch.from_numpy(level.affine).float().to(dev)
    pts = ijk @ aff[:3, :3].T + aff[:3, 3]
    vals = img.reshape(-1)
    keep = vals > mask_threshold
    if box is not None:
        lo, hi = (torch.from_numpy(b).float().to(dev) for b in box)
        keep &= ((pts >= lo) & (pts <= hi)).all(dim=1)
    return pts[keep], vals[keep]


# ----------------------------------------------------------------------------- similarity


@lru_cache(maxsize=4)
def _parzen_constants(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    centres = torch.linspace(0.0, 1.0, NUM_BINS)
    sigma = torch.mean(centres[1:] - centres[:-1]) * 0.5
    return (1 / (2 * sigma ** 2)).to(device), centres.to(device)


def parzen_weights(values: torch.Tensor) -> torch.Tensor:
    """Gaussian Parzen window weights (..., N, bins) of intensities in [0, 1], rows summing to 1.

    Exponents below -80 are raised to -80: weights under 2e-35 (bins more than ~6 bins away, which
    float32 cannot add to a row summing to ~1 anyway) stay normal numbers; denormals made every
    operation on the weights several times slower."""
    preterm, centres = _parzen_constants(values.device)
    x = torch.clamp(values, 0, 1)[..., None]
    w = torch.exp(torch.clamp(-preterm * (x - centres) ** 2, min=-80.0))
    return w / torch.sum(w, dim=-1, keepdim=True)


def mutual_information(w_moving: torch.Tensor, w_fixed: torch.Tensor) -> torch.Tensor:
    """MI (B,) from moving weights (B, N, bins) and fixed weights (N, bins) of the same points
    (MONAI's GlobalMutualInformationLoss, negated)."""
    n = w_moving.shape[1]
    pab = torch.matmul(w_moving.transpose(1, 2), w_fixed) / n
    pa = torch.mean(w_moving, dim=1)
    pb = torch.mean(w_fixed, dim=0)
    papb = pa[:, :, None] * pb[None, None, :]
    return torch.sum(pab * torch.log((pab + 1e-7) / (papb + 1e-7) + 1e-7), dim=(1, 2))


class _SampledMI(torch.autograd.Function):
    """MI (B,) of moving intensities (B, N) against fixed Parzen weights (N, bins), with the
    gradient with respect to the moving intensities written out (autograd's chain through the
    Parzen windows cost more than the rest of an iteration). Same value and gradient as
    ``mutual_information(parzen_weights(x), w_fixed)``, up to float rounding."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, w_fixed: torch.Tensor) -> torch.Tensor:
        preterm, centres = _parzen_constants(x.device)
        inside = (x >= 0) & (x <= 1)
        xc = torch.clamp(x, 0, 1)[..., None]
        diff = xc - centres  # (B, N, bins)
        wa = torch.exp(torch.clamp(-preterm * diff * diff, min=-80.0))
        wa /= torch.sum(wa, dim=-1, keepdim=True)
        n = x.shape[1]
        pab = torch.matmul(wa.transpose(1, 2), w_fixed) / n  # (B, bins, bins)
        pa = torch.mean(wa, dim=1)
        pb = torch.mean(w_fixed, dim=0)
        papb = pa[:, :, None] * pb[None, None, :]
        q = (pab + 1e-7) / (papb + 1e-7) + 1e-7
        ctx.save_for_backward(wa, diff, w_fixed, pab, papb, q, pb, inside)
        return torch.sum(pab * torch.log(q), dim=(1, 2))

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        wa, diff, w_fixed, pab, papb, q, pb, inside = ctx.saved_tensors
        preterm, _ = _parzen_constants(wa.device)
        n = wa.shape[1]
        r = pab / q
        g_pab = torch.log(q) + r / (papb + 1e-7)  # dMI/dpab
        g_papb = -r * (pab + 1e-7) / (papb + 1e-7) ** 2
        g_pa = torch.sum(g_papb * pb[None, None, :], dim=2)  # (B, bins)
        # dMI/dwa[n, a] = (sum_b g_pab[a, b] w_fixed[n, b] + g_pa[a]) / N
        g_wa = (torch.matmul(w_fixed, g_pab.transpose(1, 2)) + g_pa[:, None, :]) / n
        # wa = e / sum(e), d log e_k / dx = -2 preterm (x - c_k)
        dlog = diff * (-2.0 * preterm)
        gw = g_wa * wa
        gx = torch.sum(gw * dlog, dim=-1) - torch.sum(gw, dim=-1) * torch.sum(wa * dlog, dim=-1)
        gx = gx * inside * grad_out[:, None]
        return gx, None


def _mi(matrix: np.ndarray, fixed_pts, fixed_vals, moving: _Level, n: int = 60000) -> float:
    idx = torch.randperm(fixed_pts.shape[0], generator=torch.Generator().manual_seed(7))[:n]
    idx = idx.to(fixed_pts.device)
    m = torch.from_numpy(matrix).float().to(fixed_pts.device)
    with torch.no_grad():
        warped = _sample(moving, (fixed_pts[idx] @ m[:3, :3].T + m[:3, 3])[None])
        return float(mutual_information(parzen_weights(warped), parzen_weights(fixed_vals[idx]))[0])


def _nmi_batch(matrices: torch.Tensor, fixed_pts, fixed_vals, moving: _Level, n: int = 20000) -> list[float]:
    """MI / entropy of the fixed intensities, per matrix (B, 4, 4), on up to ``n`` of the points: a
    similarity that does not assume one contrast (fat bright without fat suppression, dark with it:
    the NCC of such a pair is negative when it is perfectly aligned)."""
    idx = torch.randperm(fixed_pts.shape[0], generator=torch.Generator().manual_seed(11))[:n]
    idx = idx.to(fixed_pts.device)
    with torch.no_grad():
        w_fixed = parzen_weights(fixed_vals[idx])
        warped = _sample(moving, _apply(matrices, fixed_pts[idx]))
        mi = mutual_information(parzen_weights(warped), w_fixed)
        pb = w_fixed.mean(dim=0)
        entropy = float(-(pb * torch.log(pb + 1e-12)).sum())
    return [float(v) / max(entropy, 1e-6) for v in mi.cpu()]


def _ncc_batch(matrices: torch.Tensor, fixed_pts, fixed_vals, moving: _Level) -> list[float]:
    with torch.no_grad():
        w = _sample(moving, _apply(matrices, fixed_pts))
        a = fixed_vals - fixed_vals.mean()
        b = w - w.mean(dim=1, keepdim=True)
        ncc = (a * b).sum(dim=1) / torch.sqrt((a * a).sum() * (b * b).sum(dim=1)).clamp(min=1e-9)
    return [float(v) for v in ncc.cpu()]


# ----------------------------------------------------------------------------- transforms


def _apply(m: torch.Tensor, pts: torch.Tensor) -> torch.Tensor:
    """(B, 4, 4) matrices applied to (N, 3) points -> (B, N, 3)."""
    return pts @ m[:, :3, :3].transpose(1, 2) + m[:, None, :3, 3]


def _euler(r: torch.Tensor) -> torch.Tensor:
    """(B, 3) angles -> (B, 3, 3) rotations Rz @ Ry @ Rx."""
    c, s = torch.cos(r), torch.sin(r)
    cx, cy, cz = c.unbind(1)
    sx, sy, sz = s.unbind(1)
    one, zero = torch.ones_like(cx), torch.zeros_like(cx)
    rx = torch.stack([one, zero, zero, zero, cx, -sx, zero, sx, cx], 1).reshape(-1, 3, 3)
    ry = torch.stack([cy, zero, sy, zero, one, zero, -sy, zero, cy], 1).reshape(-1, 3, 3)
    rz = torch.stack([cz, -sz, zero, sz, cz, zero, zero, zero, one], 1).reshape(-1, 3, 3)
    return rz @ ry @ rx


class _Transform:
    """A batch of transforms x -> c + A (x - c) + t, each composed after a fixed 4x4 ``base``
    (applied last).

    Parameters are scaled so one Adam step moves rotations by ~0.5 degree, translations by ~0.5 mm.
    """

    def __init__(self, centre: np.ndarray, affine: bool, base: np.ndarray | None = None,
                 batch: int = 1) -> None:
        dev = compute_device()
        self.c = torch.tensor(np.asarray(centre, dtype=float), dtype=torch.float32, device=dev)
        self.rot = torch.zeros(batch, 3, device=dev, requires_grad=True)
        self.trans = torch.zeros(batch, 3, device=dev, requires_grad=True)
        self.lin = torch.zeros(batch, 9, device=dev, requires_grad=True) if affine else None
        b = np.eye(4) if base is None else np.asarray(base, dtype=float)
        self.base = torch.from_numpy(np.broadcast_to(b, (batch, 4, 4)).copy()).float().to(dev)
        self.eye3 = torch.eye(3, device=dev)

    def parameters(self) -> list[torch.Tensor]:
        return [p for p in (self.rot, self.trans, self.lin) if p is not None]

    def matrix(self) -> torch.Tensor:
        a = _euler(self.rot * 0.1)
        if self.lin is not None:
            a = a @ (self.eye3 + 0.02 * self.lin.reshape(-1, 3, 3))
        t = self.c + self.trans * 10.0 - a @ self.c
        top = torch.cat([a, t[:, :, None]], dim=2)
        bottom = torch.tensor([0.0, 0.0, 0.0, 1.0], device=a.device).expand(a.shape[0], 1, 4)
        return self.base @ torch.cat([top, bottom], dim=1)

    def numpy(self) -> np.ndarray:
        """(B, 4, 4) float64 matrices."""
        return self.matrix().detach().cpu().numpy().astype(float)


class _Adam:
    """torch.optim.Adam's single-tensor update (betas 0.9/0.999, eps 1e-8), written out."""

    def __init__(self, params: list[torch.Tensor], lr: float) -> None:
        self.params, self.lr, self.step_n = params, lr, 0
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params]

    def step(self) -> None:
        self.step_n += 1
        bc1 = 1 - 0.9 ** self.step_n
        bc2_sqrt = math.sqrt(1 - 0.999 ** self.step_n)
        with torch.no_grad():
            for p, m, v in zip(self.params, self.m, self.v, strict=True):
                g = p.grad
                assert g is not None, "step() without a backward pass"
                m.lerp_(g, 0.1)
                v.mul_(0.999).addcmul_(g, g, value=0.001)
                p.addcdiv_(m, (v.sqrt() / bc2_sqrt).add_(1e-8), value=-self.lr / bc1)
                p.grad = None


def _optimise(model: _Transform, fixed_pts, fixed_vals, moving: _Level, iterations: int,
              n_sample: int, gen: torch.Generator, lr: float = 0.05,
              w_fixed_all: torch.Tensor | None = None) -> None:
    """Maximise the sum of the batch's MI; sample indices drawn on the CPU (same on any device).

    ``w_fixed_all``: the Parzen weights of ``fixed_vals`` when already computed."""
    if w_fixed_all is None:
        w_fixed_all = parzen_weights(fixed_vals)
    opt = _Adam(model.parameters(), lr)
    n = fixed_pts.shape[0]
    for it in range(iterations):
        idx = torch.randint(0, n, (min(n_sample, n),), generator=gen).to(fixed_pts.device)
        # fixed LPS -> moving voxel indices in one product: (LPS -> voxel) @ transform
        warped = _interpolate(moving, _apply(moving.inv @ model.matrix(), fixed_pts.index_select(0, idx)))
        loss = -_SampledMI.apply(warped, w_fixed_all.index_select(0, idx)).sum()
        loss.backward()
        opt.step()
        if it == int(iterations * 0.7):
            opt.lr = lr * 0.3


# ----------------------------------------------------------------------------- box alignment


def _box(centre: np.ndarray, half_mm: float) -> tuple[np.ndarray, np.ndarray]:
    return centre - half_mm, centre + half_mm


def _mapped_box(box: tuple[np.ndarray, np.ndarray], matrix: np.ndarray,
                margin_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """Axis-aligned LPS box around the image of ``box`` under ``matrix``, widened by a margin."""
    corners = np.array([[x, y, z] for x in (box[0][0], box[1][0]) for y in (box[0][1], box[1][1])
                        for z in (box[0][2], box[1][2])])
    mapped = corners @ matrix[:3, :3].T + matrix[:3, 3]
    return mapped.min(axis=0) - margin_mm, mapped.max(axis=0) + margin_mm


@_single_threaded
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
    box = _box(centre, half_box_mm)
    f_lvl = pool_level(f_img, voxel_mm, box)
    m_box = _mapped_box(box, base, MOVING_MARGIN_MM)
    m_lvls = [pool_level(m, voxel_mm, m_box) for m in m_imgs]
    shapes = {tuple(lv.image.shape) for lv in m_lvls}
    if len(shapes) > 1 or any(not np.allclose(lv.affine, m_lvls[0].affine) for lv in m_lvls):
        raise ValueError("the moving images of a batch must share one voxel grid")
    m_lvl = _Level(torch.cat([lv.image for lv in m_lvls], dim=0), m_lvls[0].affine)
    pts, vals = _level_points(f_lvl, 0.02, box)
    if pts.shape[0] < 500:
        return None
    b = len(movings)
    dev = pts.device
    eye = torch.eye(4, device=dev).expand(b, 4, 4)
    base_t = torch.from_numpy(np.asarray(base, dtype=float)).float().to(dev).expand(b, 4, 4)
    n_pts, n_vals = _outside_sphere(pts, vals, centre, ncc_exclude_mm)
    ncc_identity = _ncc_batch(eye, n_pts, n_vals, m_lvl)
    ncc_base = _ncc_batch(base_t, n_pts, n_vals, m_lvl)
    model = _Transform(centre, affine=False, base=base, batch=b)
    _optimise(model, pts, vals, m_lvl, iters, n_sample, gen, lr=0.03)
    with torch.no_grad():
        final = model.matrix()
    ncc_after = _ncc_batch(final, n_pts, n_vals, m_lvl)
    matrices = final.cpu().numpy().astype(float)
    return [(matrices[i], ncc_identity[i], ncc_base[i], ncc_after[i]) for i in range(b)]


def _outside_sphere(pts: torch.Tensor, vals: torch.Tensor, centre: np.ndarray,
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


# ----------------------------------------------------------------------------- registration


def _multi_start(bases: np.ndarray, centre: np.ndarray, level: tuple, lesion_b: np.ndarray,
                 gen: torch.Generator) -> tuple[np.ndarray, float]:
    """Multi-start: the first level's rigid refinement from every start in one batch. The best
    start's matrix by MI, and how far apart the lesion lands under the starts that nearly tie with
    it (``RIVAL_MI``): the start spread."""
    m_first, pts0, vals0, w0, iters0, n0 = level
    model = _Transform(centre, affine=False, base=bases, batch=len(bases))
    _optimise(model, pts0, vals0, m_first, iters0, n0, gen, w_fixed_all=w0)
    refined = model.numpy()
    start_mi = np.array([_mi(m, pts0, vals0, m_first) for m in refined])
    best = int(np.argmax(start_mi))
    lesion_starts = np.array([_inverse_point(m, lesion_b) for m in refined])
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


def local_figures(f_img: Prepared, m_img: Prepared, lesion_fu: np.ndarray,
                  matrices: list[np.ndarray]) -> list[tuple[float, float]]:
    """(local NCC, local normalised MI) of each follow-up -> baseline matrix in the lesion's box,
    the treated sphere left out (``NCC_EXCLUDE_RADIUS_MM``); NaNs when the box holds too little
    tissue. The boxes are read around the first matrix's image of the box."""
    box = _box(lesion_fu, LOCAL_HALF_BOX_MM)
    f_lvl = pool_level(f_img, LOCAL_LEVEL[0], box)
    m_lvl = pool_level(m_img, LOCAL_LEVEL[0], _mapped_box(box, matrices[0], MOVING_MARGIN_MM))
    pts, vals = _level_points(f_lvl, 0.02, box)
    pts, vals = _outside_sphere(pts, vals, lesion_fu, NCC_EXCLUDE_RADIUS_MM)
    if pts.shape[0] < 500:
        return [(float("nan"), float("nan"))] * len(matrices)
    m_t = torch.from_numpy(np.stack(matrices)).float().to(pts.device)
    return list(zip(_ncc_batch(m_t, pts, vals, m_lvl), _nmi_batch(m_t, pts, vals, m_lvl), strict=True))


@_single_threaded
def register(fixed: Volume, moving: Volume, lesion_baseline_lps: np.ndarray,
             seed: int = 0, global_search: bool = True) -> RegistrationResult:
    """Register follow-up (``fixed``) to baseline (``moving``) pre-contrast volumes.

    ``lesion_baseline_lps``: the treated tumour's centre in the baseline; the local refinement
    works in a box around where the global transform puts it in the follow-up.

    Issue 11: the start does not depend on where the studies lie in the scanner:
    :func:`followup.pipelines.initialise.coarse_search` proposes ``STARTS`` distinct rigid starts
    (body mask, exhaustive translation and rotation search at ~8 mm), the first level's rigid
    refinement runs from all of them at once (multi-start), and the best by MI after it goes on
    to the finer rigid level, the affine stage and the local refinement, as before.
    ``global_search=False``: one start at the identity (the former behaviour).
    """
    from followup.pipelines.initialise import body_overlap, coarse_search

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    f_img, m_img = prepare(fixed), prepare(moving)
    levels = []  # pooled once, shared by the rigid and the affine stage
    for voxel_mm, iters, n_sample in GLOBAL_LEVELS:
        f_lvl, m_lvl = pool_level(f_img, voxel_mm), pool_level(m_img, voxel_mm)
        pts, vals = _level_points(f_lvl, 0.05, None)
        levels.append((m_lvl, pts, vals, parzen_weights(vals), iters, n_sample))
    centre = fixed.centre_world()
    lesion_b = np.asarray(lesion_baseline_lps, float)
    m_first, pts0, vals0 = levels[0][:3]
    mi_before = _mi(np.eye(4), pts0, vals0, m_first)
    search = coarse_search(f_img, m_img, STARTS if global_search else 1, seed,
                           identity_only=not global_search)
    bases = np.stack([c.matrix for c in search.candidates])
    best_start, start_spread = _multi_start(bases, centre, levels[0], lesion_b, gen)

    model = _Transform(centre, affine=False, base=best_start)
    for m_lvl, pts, vals, w_fixed, iters, n_sample in levels[1:]:
        _optimise(model, pts, vals, m_lvl, iters, n_sample, gen, w_fixed_all=w_fixed)
    model = _Transform(centre, affine=True, base=model.numpy()[0])
    for m_lvl, pts, vals, w_fixed, iters, n_sample in levels:
        _optimise(model, pts, vals, m_lvl, iters // 2, n_sample, gen, w_fixed_all=w_fixed)
    global_m = model.numpy()[0]
    m_last, pts, vals = levels[-1][:3]
    mi_after = _mi(global_m, pts, vals, m_last)
    nmi_overlap, fov_overlap = _overlap_nmi(global_m, pts, vals, m_last, moving)

    lesion_fu = _inverse_point(global_m, lesion_b)
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
    lesion_final = _inverse_point(local_m, lesion_b)
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


@_single_threaded
def alignment_figures(fixed: Volume, moving: Volume, matrix: np.ndarray,
                      lesion_baseline_lps: np.ndarray) -> dict[str, float]:
    """The quality figures that judge an alignment by itself (no optimisation): the local NCC in
    the lesion's box (as after :func:`register`'s local refinement) and the normalised MI over the
    overlapping fields of view, for any follow-up -> baseline ``matrix`` (ours, a peer's, or a
    deliberately wrong one: how the benchmark measures whether the figures tell a failed
    registration from a converged one)."""
    matrix = np.asarray(matrix, dtype=float)
    f_img, m_img = prepare(fixed), prepare(moving)
    lesion_fu = _inverse_point(matrix, np.asarray(lesion_baseline_lps, float))
    ((ncc, local_nmi),) = local_figures(f_img, m_img, lesion_fu, [matrix])
    voxel_mm = GLOBAL_LEVELS[-1][0]
    f_g, m_g = pool_level(f_img, voxel_mm), pool_level(m_img, voxel_mm)
    g_pts, g_vals = _level_points(f_g, 0.05, None)
    nmi, overlap = _overlap_nmi(matrix, g_pts, g_vals, m_g, moving)
    return {"local_ncc": float(ncc), "local_nmi": float(local_nmi), "normalised_mi": float(nmi),
            "fov_overlap": float(overlap)}


def _overlap_nmi(matrix: np.ndarray, fixed_pts, fixed_vals, moving: _Level, moving_vol: Volume,
                 n: int = 60000) -> tuple[float, float]:
    """MI / entropy of the follow-up, over the follow-up body voxels that the transform maps into
    the baseline's field of view (a unilateral sagittal baseline covers half of a bilateral axial
    follow-up: the voxels beyond it are not evidence of misalignment), and the fraction of the body
    voxels that do."""
    m = torch.from_numpy(matrix).float().to(fixed_pts.device)
    mapped = fixed_pts @ m[:3, :3].T + m[:3, 3]
    inv = torch.from_numpy(np.linalg.inv(moving_vol.affine)).float().to(fixed_pts.device)
    ijk = mapped @ inv[:3, :3].T + inv[:3, 3]
    upper = torch.tensor(moving_vol.shape, device=ijk.device, dtype=ijk.dtype) - 1
    inside = ((ijk >= 0) & (ijk <= upper)).all(dim=1)
    frac = float(inside.float().mean()) if inside.numel() else 0.0
    if int(inside.sum()) < 100:
        return 0.0, frac
    pts_in, vals_in = fixed_pts[inside], fixed_vals[inside]
    idx = torch.randperm(pts_in.shape[0], generator=torch.Generator().manual_seed(7))[:n]
    idx = idx.to(pts_in.device)
    with torch.no_grad():
        w_fixed = parzen_weights(vals_in[idx])
        warped = _sample(moving, (pts_in[idx] @ m[:3, :3].T + m[:3, 3])[None])
        mi = float(mutual_information(parzen_weights(warped), w_fixed)[0])
        pb = w_fixed.mean(dim=0)
        entropy = float(-(pb * torch.log(pb + 1e-12)).sum())
    return mi / max(entropy, 1e-6), frac


def _inverse_point(matrix: np.ndarray, lps: np.ndarray) -> np.ndarray:
    """Image of a baseline LPS point in the follow-up under a follow-up -> baseline matrix."""
    inv = np.linalg.inv(matrix)
    return inv[:3, :3] @ np.asarray(lps, float) + inv[:3, 3]


def quality_reasons(figures: dict[str, float]) -> list[str]:
    """Why a registration is poor, from its figures (empty: good)."""
    out = []
    nmi = figures["local_nmi"]
    if math.isfinite(nmi) and nmi < MIN_LOCAL_NMI:
        out.append(f"low similarity around the lesion after registration "
                   f"(normalised MI {nmi:.2f} < {MIN_LOCAL_NMI})")
    if figures["normalised_mi"] < MIN_NORMALISED_MI:
        out.append(f"low global similarity after registration (normalised MI "
                   f"{figures['normalised_mi']:.2f} < {MIN_NORMALISED_MI})")
    if figures["start_spread_mm"] > MAX_START_SPREAD_MM:
        out.append(f"starts of nearly equal similarity disagree by {figures['start_spread_mm']:.1f} "
                   f"mm at the lesion (> {MAX_START_SPREAD_MM:g} mm): ambiguous alignment")
    if figures["local_correction_mm"] > MAX_LOCAL_CORRECTION_MM:
        out.append(f"local refinement moved the lesion by {figures['local_correction_mm']:.1f} mm "
                   f"(> {MAX_LOCAL_CORRECTION_MM:g} mm): global and local alignment disagree")
    if figures["max_scale_deviation"] > MAX_SCALE_DEVIATION:
        out.append(f"implausible scaling (deviation {figures['max_scale_deviation']:.2f}) in the "
                   "affine stage")
    return out
