"""Breast composition and background parenchymal enhancement on phantoms of known gland share and
enhancing share, with and without fat suppression, axial bilateral and sagittal unilateral."""

from __future__ import annotations

import numpy as np
import pytest

from followup.pipelines.breast_tissue import (
    BackgroundEnhancement,
    Composition,
    assess_tissue,
    bpe_of,
    composition_of,
)
from tests.unit.pipelines import breast_phantom as bp


def test_bands():
    assert [composition_of(s).value for s in (0.1, 0.3, 0.6, 0.9)] == ["a", "b", "c", "d"]
    assert [bpe_of(s).value for s in (0.1, 0.3, 0.6, 0.9)] == ["minimal", "mild", "moderate", "marked"]


@pytest.mark.parametrize("fat_sat", [True, False, None])
def test_fatty_minimal_against_dense_marked_both_breasts(fat_sat):
    shape, aff = bp.axial_affine()
    drawn_fs = fat_sat is not False
    pre, post, _ = bp.draw(shape, aff, fat_sat=drawn_fs, gland_share=0.03, enhancing=0.1)
    fatty = assess_tissue(pre, post, aff, fat_sat, "R")
    assert [b.side for b in fatty.breasts] == ["right", "left"]
    assert fatty.fat_suppressed is drawn_fs
    for b in fatty.breasts:
        assert b.composition is Composition.ALMOST_ENTIRELY_FATTY and b.fibroglandular_share < 0.15
        assert b.bpe is BackgroundEnhancement.MINIMAL and not b.confidence_lowering
    assert fatty.treated is not None and fatty.treated.side == "right" and not fatty.confidence_lowering
    pre, post, _ = bp.draw(shape, aff, fat_sat=drawn_fs, gland_share=1.0, enhancing=0.95, fat_mm=4.0)
    dense = assess_tissue(pre, post, aff, fat_sat, "R")
    for b in dense.breasts:
        assert b.composition is Composition.EXTREME and b.fibroglandular_share > 0.75
        assert b.bpe is BackgroundEnhancement.MARKED and b.confidence_lowering
    assert dense.confidence_lowering


def test_sagittal_reads_the_one_breast_and_leaves_the_zone_out():
    shape, aff = bp.sagittal_affine(1.0)
    pre, post, _ = bp.draw(shape, aff, gland_share=0.4, enhancing=0.6)
    read = assess_tissue(pre, post, aff, True, "L")
    assert [b.side for b in read.breasts] == ["left"] and read.breasts[0].treated
    b = read.breasts[0]
    assert b.composition is Composition.SCATTERED and 0.2 < b.fibroglandular_share < 0.45
    assert b.bpe is BackgroundEnhancement.MODERATE
    zone = np.array([85.0, -60.0, 0.0])
    cut = assess_tissue(pre, post, aff, True, "L", exclude_centre_lps=zone, exclude_radius_mm=20.0)
    assert cut.breasts[0].excluded_ml == pytest.approx(4 / 3 * np.pi * 20**3 / 1000, rel=0.15)
    assert cut.breasts[0].breast_volume_ml == pytest.approx(b.breast_volume_ml - cut.breasts[0].excluded_ml, rel=0.02)
