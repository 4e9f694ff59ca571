"""The optimiser: maximise the Parzen MI of a batch of transforms by Adam on sampled points."""

from __future__ import annotations

import math

import torch

from followup.pipelines.registration.metric import SampledMI, parzen_weights
from followup.pipelines.registration.sampling import Level, interpolate
from followup.pipelines.registration.transform import Transform, apply_batch


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


def optimise(model: Transform, fixed_pts, fixed_vals, moving: Level, iterations: int,
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
        warped = interpolate(moving, apply_batch(moving.inv @ model.matrix(), fixed_pts.index_select(0, idx)))
        loss = -SampledMI.apply(warped, w_fixed_all.index_select(0, idx)).sum()
        loss.backward()
        opt.step()
        if it == int(iterations * 0.7):
            opt.lr = lr * 0.3

