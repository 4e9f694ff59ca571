"""The MIP key image (followup.reporting.mip_image) on phantoms: one bright enhancing blob per
breast, axial and sagittal acquisitions, bilateral fields. The brightest point of the MIP lies
where the blob projects, the marker is drawn there, and only the treated breast is projected."""

from __future__ import annotations

import numpy as np
import pytest

from followup.reporting.mip_image import (
    OUT_PX_PER_MM,
    Mark,
    MarkKind,
    mip_png,
    mip_rgb,
    mip_view,
)
from followup.reporting.picture import Plane, lps_aligned

SP = 2.5  # mm in-plane
DZ = 3.0  # mm between slices
LEFT_BLOB = (60.0, -60.0, 9.0)  # LPS: the patient's left breast, anterior
RIGHT_BLOB = (-70.0, -40.0, -12.0)  # the right breast, a little deeper and lower


def _axial_affine(n_xy: int, n_z: int) -> np.ndarray:
    """Rows along +y, columns along +x, slices along +z, centred on the origin."""
    a = np.diag([SP, SP, DZ, 1.0])
    a[:3, 3] = [-(n_xy - 1) * SP / 2, -(n_xy - 1) * SP / 2, -(n_z - 1) * DZ / 2]
    return a


def _sagittal_affine(n_y: int, n_z: int, n_x: int) -> np.ndarray:
    """Columns along +y (posterior), rows along -z (down), slices along +x (to the left)."""
    a = np.zeros((4, 4))
    a[:3, 0] = [0, SP, 0]
    a[:3, 1] = [0, 0, -SP]
    a[:3, 2] = [DZ, 0, 0]
    a[3, 3] = 1.0
    a[:3, 3] = [-(n_x - 1) * DZ / 2, -(n_y - 1) * SP / 2, (n_z - 1) * SP / 2]
    return a


def _phantom(shape: tuple[int, int, int], affine: np.ndarray,
             blobs: list[tuple[tuple[float, float, float], float]]) -> tuple[np.ndarray, np.ndarray]:
    """Pre-contrast: uniform tissue with noise; post: the same plus Gaussian blobs (peak, 4 mm sigma)."""
    rng = np.random.default_rng(3)
    pre = (100 + rng.normal(0, 3, shape)).astype(np.float32)
    ijk = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), -1).astype(float)
    lps = ijk @ affine[:3, :3].T + affine[:3, 3]
    post = pre + rng.normal(0, 3, shape).astype(np.float32)
    for centre, peak in blobs:
        d2 = ((lps - np.asarray(centre)) ** 2).sum(-1)
        post += (peak * np.exp(-d2 / (2 * 4.0 ** 2))).astype(np.float32)
    return pre, post


def _brightest_mm(view) -> np.ndarray:
    """(x, y) mm from the top left of the MIP's brightest pixel's centre."""
    img = view.picture.image
    r, c = np.unravel_index(int(np.argmax(img)), img.shape)
    sr, sc = view.picture.spacing_mm
    return np.array([(c + 0.5) * sc, (r + 0.5) * sr])


@pytest.fixture(scope="module")
def axial():
    shape = (128, 128, 20)  # 320 x 320 mm: a bilateral field
    aff = _axial_affine(128, 20)
    pre, post = _phantom(shape, aff, [(LEFT_BLOB, 400.0), (RIGHT_BLOB, 250.0)])
    return pre, post, aff


@pytest.fixture(scope="module")
def sagittal():
    shape = (96, 64, 100)  # y 240 mm, z 160 mm, x 300 mm: both breasts in one sagittal stack
    aff = _sagittal_affine(96, 64, 100)
    pre, post = _phantom(shape, aff, [(LEFT_BLOB, 250.0), (RIGHT_BLOB, 400.0)])
    return pre, post, aff


def _marks(blob: tuple[float, float, float]) -> list[Mark]:
    return [Mark(blob, "1", MarkKind.FOCUS, 4.0)]


@pytest.mark.parametrize("side, blob", [("L", LEFT_BLOB), ("R", RIGHT_BLOB)])
def test_axial_mip_brightest_point_is_the_treated_breasts_blob(axial, side, blob):
    pre, post, aff = axial
    view = mip_view(pre, post, aff, side, _marks(blob))
    assert view.picture.plane == Plane.AXIAL
    assert view.picture.edge_labels == ("R", "L", "A", "P")
    assert view.side == ("the left half of the field" if side == "L" else "the right half of the field")
    # only half of the 128 columns (a 20 mm slack beyond the midline at most), the anterior half
    assert 64 <= view.picture.image.shape[1] <= 64 + 20 / SP + 1
    assert view.picture.image.shape[0] <= 65
    mark = view.marks[0]
    np.testing.assert_allclose(_brightest_mm(view), [mark.x_mm, mark.y_mm], atol=SP)
    # columns from the kept half's edge: the left half starts at the column at x = -1.25 mm (the
    # field's centre), the right half at the field's right edge (x = -158.75 mm)
    assert mark.x_mm == pytest.approx(blob[0] + (1.25 if side == "L" else 158.75) + SP / 2, abs=0.01)
    # anterior at the top: y from the field's anterior edge (-158.75 mm)
    assert mark.y_mm == pytest.approx(blob[1] + (128 - 1) * SP / 2 + SP / 2, abs=0.01)


def test_axial_mip_does_not_show_the_other_breast(axial):
    pre, post, aff = axial
    view = mip_view(pre, post, aff, "R", _marks(RIGHT_BLOB))
    # the left breast's blob is brighter (400 vs 250), yet the right breast's MIP peaks at its own
    assert view.picture.image.max() < 0.8 * (post - pre).max()
    assert view.picture.image.max() > 0.5 * (post - pre).max()


def test_unilateral_field_is_kept_whole(axial):
    pre, post, aff = axial
    view = mip_view(pre, post, aff, "R", _marks(RIGHT_BLOB), study_laterality="R")
    assert view.picture.image.shape == (128, 128)  # all of it, L-R and A-P
    assert view.side == "the whole field (one breast)"
    assert view.picture.image.max() == (post - pre).max()  # both blobs in the field
    # radiological convention: the patient's left breast on the image's right
    left, right = (m.x_mm for m in mip_view(pre, post, aff, "R", _marks(LEFT_BLOB) + _marks(RIGHT_BLOB),
                                            study_laterality="R").marks)
    assert left > view.picture.size_mm[0] / 2 > right


@pytest.mark.parametrize("side, blob, other", [("L", LEFT_BLOB, RIGHT_BLOB), ("R", RIGHT_BLOB, LEFT_BLOB)])
def test_sagittal_mip_projects_along_lr_the_treated_breast_only(sagittal, side, blob, other):
    pre, post, aff = sagittal
    view = mip_view(pre, post, aff, side, _marks(blob))
    assert view.picture.plane == Plane.SAGITTAL
    assert view.picture.edge_labels == ("A", "P", "S", "I")
    mark = view.marks[0]
    np.testing.assert_allclose(_brightest_mm(view), [mark.x_mm, mark.y_mm], atol=SP)
    # anterior on the left: x from the anterior edge; superior at the top
    assert mark.x_mm == pytest.approx(blob[1] + (96 - 1) * SP / 2 + SP / 2, abs=0.01)
    assert mark.y_mm == pytest.approx((64 - 1) * SP / 2 - blob[2] + SP / 2, abs=0.01)
    # the other breast's blob is not projected: nothing bright where it would be
    img = view.picture.image
    c = int((other[1] + (96 - 1) * SP / 2) / SP)
    r = int(((64 - 1) * SP / 2 - other[2]) / SP)
    assert img[r - 1:r + 2, c - 1:c + 2].max() < 30


def test_marker_is_drawn_at_the_blob(axial):
    pre, post, aff = axial
    view = mip_view(pre, post, aff, "L", _marks(LEFT_BLOB))
    rgb = mip_rgb(view)
    w_mm, h_mm = view.picture.size_mm
    assert rgb.shape[:2] == (round(h_mm * OUT_PX_PER_MM), round(w_mm * OUT_PX_PER_MM))
    mark = view.marks[0]
    scale = rgb.shape[1] / w_mm  # px per mm as drawn (whole pixels: within 0.5 px of the nominal)
    cx, cy = mark.x_mm * scale, mark.y_mm * scale
    r_px = (max(mark.mark.radius_mm, 4.0) + 2.0) * scale
    red = (rgb[..., 0] > 180) & (rgb[..., 1] < 110) & (rgb[..., 2] < 110)
    yy, xx = np.nonzero(red)
    dist = np.hypot(xx - cx, yy - cy)
    ring = np.abs(dist - r_px) <= 3
    assert ring.sum() > 2 * np.pi * r_px * 0.8  # most of the ring is there, around the blob
    angles = np.arctan2(yy[ring] - cy, xx[ring] - cx)
    assert np.histogram(angles, bins=8, range=(-np.pi, np.pi))[0].min() > 0  # all the way round
    assert mip_png(view).startswith(b"\x89PNG")


def test_zone_outline_and_orientation_of_a_flipped_acquisition(axial):
    """The same voxels stored with rows running anterior (a negative direction cosine) give the
    same picture; the zone's mask projects to its silhouette."""
    pre, post, aff = axial
    flipped = aff.copy()
    flipped[:3, 1] *= -1
    flipped[:3, 3] = aff[:3, :3] @ [0, 127, 0] + aff[:3, 3]
    a = mip_view(pre, post, aff, "L", _marks(LEFT_BLOB))
    b = mip_view(pre[:, ::-1], post[:, ::-1], flipped, "L", _marks(LEFT_BLOB))
    np.testing.assert_array_equal(a.picture.image, b.picture.image)
    assert (a.marks[0].x_mm, a.marks[0].y_mm) == pytest.approx((b.marks[0].x_mm, b.marks[0].y_mm))
    zone = np.zeros(pre.shape, bool)
    ijk = np.rint(lps_aligned(pre, aff).world_to_voxel(np.array(LEFT_BLOB))).astype(int)
    zone[ijk[0] - 3:ijk[0] + 4, ijk[1] - 2:ijk[1] + 3, ijk[2] - 1:ijk[2] + 2] = True
    view = mip_view(pre, post, aff, "L", _marks(LEFT_BLOB), zone, aff)
    assert view.outline is not None and view.outline.sum() == 7 * 5
    rows, cols = np.nonzero(view.outline)
    centre = [(cols.mean() + 0.5) * SP, (rows.mean() + 0.5) * SP]
    np.testing.assert_allclose(centre, [view.marks[0].x_mm, view.marks[0].y_mm], atol=SP)
