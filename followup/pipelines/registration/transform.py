"""The transforms the registration optimises: a batch of rigid or affine maps about a centre,
composed after a fixed start, and the small matrix helpers around them."""

from __future__ import annotations

import numpy as np
import torch

from followup.pipelines.registration.compute import compute_device


def apply_batch(m: torch.Tensor, pts: torch.Tensor) -> torch.Tensor:
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


class Transform:
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



def inverse_point(matrix: np.ndarray, lps: np.ndarray) -> np.ndarray:
    """Image of a baseline LPS point in the follow-up under a follow-up -> baseline matrix."""
    inv = np.linalg.inv(matrix)
    return inv[:3, :3] @ np.asarray(lps, float) + inv[:3, 3]

