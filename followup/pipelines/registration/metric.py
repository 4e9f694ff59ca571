"""Similarity of a fixed image's sample points and a moving level: Gaussian Parzen-window mutual
information (MONAI's formulation, with the gradient written out in ``SampledMI``), and the NCC and
normalised MI of batches of matrices."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from followup.pipelines.registration.sampling import Level, sample
from followup.pipelines.registration.transform import apply_batch
from followup.volume import Volume

NUM_BINS = 32


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


class SampledMI(torch.autograd.Function):
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


def matrix_mi(matrix: np.ndarray, fixed_pts, fixed_vals, moving: Level, n: int = 60000) -> float:
    idx = torch.randperm(fixed_pts.shape[0], generator=torch.Generator().manual_seed(7))[:n]
    idx = idx.to(fixed_pts.device)
    m = torch.from_numpy(matrix).float().to(fixed_pts.device)
    with torch.no_grad():
        warped = sample(moving, (fixed_pts[idx] @ m[:3, :3].T + m[:3, 3])[None])
        return float(mutual_information(parzen_weights(warped), parzen_weights(fixed_vals[idx]))[0])


def nmi_batch(matrices: torch.Tensor, fixed_pts, fixed_vals, moving: Level, n: int = 20000) -> list[float]:
    """MI / entropy of the fixed intensities, per matrix (B, 4, 4), on up to ``n`` of the points: a
    similarity that does not assume one contrast (fat bright without fat suppression, dark with it:
    the NCC of such a pair is negative when it is perfectly aligned)."""
    idx = torch.randperm(fixed_pts.shape[0], generator=torch.Generator().manual_seed(11))[:n]
    idx = idx.to(fixed_pts.device)
    with torch.no_grad():
        w_fixed = parzen_weights(fixed_vals[idx])
        warped = sample(moving, apply_batch(matrices, fixed_pts[idx]))
        mi = mutual_information(parzen_weights(warped), w_fixed)
        pb = w_fixed.mean(dim=0)
        entropy = float(-(pb * torch.log(pb + 1e-12)).sum())
    return [float(v) / max(entropy, 1e-6) for v in mi.cpu()]


def ncc_batch(matrices: torch.Tensor, fixed_pts, fixed_vals, moving: Level) -> list[float]:
    with torch.no_grad():
        w = sample(moving, apply_batch(matrices, fixed_pts))
        a = fixed_vals - fixed_vals.mean()
        b = w - w.mean(dim=1, keepdim=True)
        ncc = (a * b).sum(dim=1) / torch.sqrt((a * a).sum() * (b * b).sum(dim=1)).clamp(min=1e-9)
    return [float(v) for v in ncc.cpu()]



def overlap_nmi(matrix: np.ndarray, fixed_pts, fixed_vals, moving: Level, moving_vol: Volume,
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
        warped = sample(moving, (pts_in[idx] @ m[:3, :3].T + m[:3, 3])[None])
        mi = float(mutual_information(parzen_weights(warped), w_fixed)[0])
        pb = w_fixed.mean(dim=0)
        entropy = float(-(pb * torch.log(pb + 1e-12)).sum())
    return mi / max(entropy, 1e-6), frac

