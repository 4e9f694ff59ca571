"""The registration's hand-written maths against the reference implementations it replaces for
speed: MONAI's GlobalMutualInformationLoss (the similarity), torch's autograd (the written-out
gradients) and ``grid_sample`` (the trilinear interpolation). If one of these drifts, the
registration optimises something else than what the README says."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from monai.losses import GlobalMutualInformationLoss

from followup.pipelines.registration.metric import NUM_BINS, SampledMI, mutual_information, parzen_weights
from followup.pipelines.registration.sampling import PAD, Trilinear


@pytest.fixture()
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(7)


def _correlated(gen: torch.Generator, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    a = torch.rand(n, generator=gen)
    b = torch.clamp(0.7 * a ** 2 + 0.3 * torch.rand(n, generator=gen), 0, 1)
    return a, b


def test_mutual_information_equals_monai_global_mi(gen):
    monai_loss = GlobalMutualInformationLoss(kernel_type="gaussian", num_bins=NUM_BINS, sigma_ratio=0.5)
    for n in (500, 20000):
        a, b = _correlated(gen, n)
        ours = mutual_information(parzen_weights(a)[None], parzen_weights(b))[0]
        theirs = -monai_loss(a.reshape(1, 1, n, 1, 1), b.reshape(1, 1, n, 1, 1))
        assert float(ours) == pytest.approx(float(theirs), rel=1e-4, abs=1e-5)
    # and it is a similarity: higher for the related pair than for an unrelated one
    a, b = _correlated(gen, 20000)
    unrelated = torch.rand(20000, generator=gen)
    assert float(mutual_information(parzen_weights(a)[None], parzen_weights(b))[0]) > \
        5 * float(mutual_information(parzen_weights(a)[None], parzen_weights(unrelated))[0])


def test_sampled_mi_value_and_gradient_match_autograd(gen):
    a, b = _correlated(gen, 4000)
    x = torch.stack([a, torch.clamp(a + 0.05, 0, 1)]).requires_grad_(True)  # batch of 2
    w_fixed = parzen_weights(b)
    ours = SampledMI.apply(x, w_fixed)
    ours.sum().backward()
    grad_ours = x.grad.clone()
    x.grad = None
    reference = mutual_information(parzen_weights(x), w_fixed)
    reference.sum().backward()
    assert torch.allclose(ours, reference, rtol=1e-5, atol=1e-6)
    assert torch.allclose(grad_ours, x.grad, rtol=1e-3, atol=1e-6 * float(x.grad.abs().max()))


def test_trilinear_matches_grid_sample_values_and_gradients(gen):
    d, h, w = 9, 11, 13
    image = torch.rand(1, d, h, w, generator=gen)
    padded = F.pad(image, (PAD,) * 6)
    size = torch.tensor([w, h, d], dtype=torch.float32)
    # points inside and up to one voxel outside the image (where the zero padding matters)
    ijk = (torch.rand(1, 3000, 3, generator=gen) * (size + 1.6) - 0.8).requires_grad_(True)
    ours = Trilinear.apply(padded, ijk)
    ours.sum().backward()
    grad_ours = ijk.grad.clone()
    ijk.grad = None
    grid = (2 * ijk / (size - 1) - 1).reshape(1, 1, 1, -1, 3)  # (x, y, z) = (i, j, k)
    ref = F.grid_sample(image[:, None], grid, mode="bilinear", padding_mode="zeros",
                        align_corners=True).reshape(1, -1)
    ref.sum().backward()
    assert torch.allclose(ours, ref, atol=1e-5)
    # away from cell borders (where the derivative jumps) the gradients agree
    frac = ijk.detach() - torch.floor(ijk.detach())
    smooth = ((frac > 0.02) & (frac < 0.98)).all(dim=-1)
    assert smooth.sum() > 2000
    assert torch.allclose(grad_ours[smooth], ijk.grad[smooth], atol=1e-4)
