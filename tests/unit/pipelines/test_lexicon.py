"""The BI-RADS lexicon of one finding, read from phantom masks with known shape, margin and inside."""

from __future__ import annotations

import numpy as np
import pytest

from followup.pipelines.segmentation.lexicon import (
    FindingType,
    InternalEnhancement,
    MassMargin,
    MassShape,
    describe,
)

N = 48


def _grid(spacing: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    affine = np.diag([spacing, spacing, spacing, 1.0])
    ijk = np.stack(np.meshgrid(*[np.arange(N)] * 3, indexing="ij"), -1).astype(float)
    return (ijk - (N - 1) / 2.0) * spacing, affine  # mm from the centre


def _read(mask: np.ndarray, pe: np.ndarray, affine: np.ndarray, diameter: float):
    return describe(mask, pe, affine, diameter, "fast", "washout")


def test_sphere_is_a_round_circumscribed_homogeneous_mass() -> None:
    x, affine = _grid()
    mask = np.linalg.norm(x, axis=-1) <= 5.0
    lex = _read(mask, np.where(mask, 120.0, 0.0), affine, 10.0)
    assert (lex.finding, lex.shape, lex.margin, lex.internal) == (
        FindingType.MASS, MassShape.ROUND, MassMargin.CIRCUMSCRIBED, InternalEnhancement.HOMOGENEOUS)
    assert not lex.suspicious_morphology
    assert lex.phrase() == ("Round mass, circumscribed margin, homogeneous internal enhancement; "
                            "initial fast, delayed washout")


def test_ellipsoid_is_oval_and_still_circumscribed() -> None:
    x, affine = _grid()
    mask = ((x / np.array([8.0, 4.0, 4.0])) ** 2).sum(-1) <= 1.0
    lex = _read(mask, np.where(mask, 100.0, 0.0), affine, 16.0)
    assert lex.shape == MassShape.OVAL
    assert lex.margin == MassMargin.CIRCUMSCRIBED


def test_oval_with_two_gentle_lobulations_stays_oval() -> None:
    """ACR BI-RADS: an oval mass may have 2-3 undulations."""
    x, affine = _grid()
    mask = ((x / np.array([7.0, 4.5, 4.5])) ** 2).sum(-1) <= 1.0
    for c in ([3, 3.5, 0], [-3, -3.5, 0]):
        mask |= np.linalg.norm(x - np.asarray(c, float), axis=-1) <= 3.0
    lex = _read(mask, np.where(mask, 100.0, 0.0), affine, 16.0)
    assert (lex.shape, lex.margin) == (MassShape.OVAL, MassMargin.CIRCUMSCRIBED)


@pytest.mark.parametrize("offset", [0.0, 0.3, 0.5])
@pytest.mark.parametrize("voxels_across", [4, 5, 6, 8])
def test_voxelised_sphere_through_coarse_voxels_is_round_and_circumscribed(voxels_across: int,
                                                                          offset: float) -> None:
    """The staircase of 3 mm voxels is no irregular margin."""
    ijk = np.stack(np.meshgrid(*[np.arange(20)] * 3, indexing="ij"), -1).astype(float)
    mask = np.linalg.norm(ijk - (10 + offset), axis=-1) <= voxels_across / 2
    lex = _read(mask, np.where(mask, 100.0, 0.0), np.diag([3.0, 3.0, 3.0, 1.0]), 3.0 * voxels_across)
    assert (lex.shape, lex.margin) == (MassShape.ROUND, MassMargin.CIRCUMSCRIBED)


def test_spiky_sphere_is_spiculated_and_suspicious() -> None:
    x, affine = _grid()
    r = np.linalg.norm(x, axis=-1)
    mask = r <= 4.0
    for d in ([1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0.6, 0.6, -0.5]):
        u = np.asarray(d, float) / np.linalg.norm(d)
        along = x @ u
        off = np.linalg.norm(x - along[..., None] * u, axis=-1)
        mask |= (along > 0) & (along <= 10.0) & (off <= 0.9)
    lex = _read(mask, np.where(mask, 100.0, 0.0), affine, 20.0)
    assert lex.margin == MassMargin.SPICULATED
    assert lex.suspicious_morphology


def test_lobulated_blob_is_irregular() -> None:
    x, affine = _grid()
    mask = np.zeros(x.shape[:3], bool)
    for c in ([-5, 0, 0], [4, 3, 0], [2, -5, 2], [0, 2, -5]):
        mask |= np.linalg.norm(x - np.asarray(c, float), axis=-1) <= 3.2
    lex = _read(mask, np.where(mask, 100.0, 0.0), affine, 18.0)
    assert lex.shape == MassShape.IRREGULAR
    assert lex.margin in (MassMargin.IRREGULAR, MassMargin.SPICULATED)


def test_ring_enhancing_and_heterogeneous_insides() -> None:
    x, affine = _grid()
    r = np.linalg.norm(x, axis=-1)
    mask = r <= 6.0
    ring = _read(mask, np.where(r >= 4.5, 150.0, 30.0) * mask, affine, 12.0)
    assert ring.internal == InternalEnhancement.RIM and ring.suspicious_morphology
    rng = np.random.default_rng(3)
    patchy = np.where(rng.random(mask.shape) < 0.5, 40.0, 160.0) * mask
    het = _read(mask, patchy, affine, 12.0)
    assert het.internal == InternalEnhancement.HETEROGENEOUS


def test_small_finding_is_a_focus_and_coarse_voxels_leave_descriptors_out() -> None:
    x, affine = _grid()
    small = np.linalg.norm(x, axis=-1) <= 1.8
    focus = _read(small, np.where(small, 100.0, 0.0), affine, 4.0)
    assert focus.finding == FindingType.FOCUS and focus.shape is None
    assert focus.phrase() == "Focus; initial fast, delayed washout"
    # a 7 mm nodule through 3.5 mm voxels: 2 voxels across, nothing but "mass" can be read
    coarse = np.diag([3.5, 3.5, 3.5, 1.0])
    m = np.zeros((6, 6, 6), bool)
    m[2:4, 2:4, 2:4] = True
    lex = _read(m, np.where(m, 100.0, 0.0), coarse, 7.0)
    assert lex.finding == FindingType.MASS
    assert lex.shape is None and lex.margin is None and lex.internal is None
    assert len(lex.not_read) == 3 and "voxels across" in lex.not_read[0]
    assert lex.phrase().startswith("Mass; initial fast")


@pytest.mark.parametrize("spacing", [0.7, 1.0])
def test_sphere_stays_round_and_circumscribed_through_coarser_voxels(spacing: float) -> None:
    x, affine = _grid(spacing)
    mask = np.linalg.norm(x, axis=-1) <= 6.0
    rng = np.random.default_rng(0)
    lex = _read(mask, (100.0 + rng.normal(0, 4, mask.shape)) * mask, affine, 12.0)
    assert (lex.shape, lex.margin, lex.internal) == (
        MassShape.ROUND, MassMargin.CIRCUMSCRIBED, InternalEnhancement.HOMOGENEOUS)
