"""The zoomed view of a finding (followup.reporting.finding_images): the slice through its centre,
its outline, a 10 mm scale bar whose length in pixels is 10 mm at the picture's scale, the caption
hook for the finding's location."""

from __future__ import annotations

import numpy as np
import pytest

from followup.reporting.finding_images import (
    SCALE_BAR_MM,
    ZOOM_WIDTH_PX,
    finding_caption,
    scale_bar_mm,
    zoom_png,
    zoom_rgb,
    zoom_view,
)

SP, DZ = 0.8, 2.0
CENTRE = np.array([10.4, -20.0, 6.0])  # LPS, on a voxel centre


def _phantom():
    """A 64 x 64 x 12 axial box, a bright ball of 4 mm radius at CENTRE on the first subtraction."""
    shape = (64, 64, 12)
    aff = np.diag([SP, SP, DZ, 1.0])
    aff[:3, 3] = CENTRE - np.array([32 * SP, 32 * SP, 6 * DZ])
    ijk = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), -1).astype(float)
    lps = ijk @ aff[:3, :3].T + aff[:3, 3]
    ball = np.linalg.norm(lps - CENTRE, axis=-1) <= 4.0
    pre = np.full(shape, 100.0, np.float32)
    post = pre + 200.0 * ball.astype(np.float32)
    return pre, post, aff, ball


@pytest.mark.parametrize("half_mm", [15.0, 24.0])
def test_scale_bar_is_ten_mm_long(half_mm):
    pre, post, aff, ball = _phantom()
    view = zoom_view(pre, post, aff, CENTRE, ball, half_mm, "Focus 1", "#ff3030")
    rgb = zoom_rgb(view)
    w_mm = view.picture.size_mm[0]
    assert rgb.shape[1] == ZOOM_WIDTH_PX
    px_per_mm = rgb.shape[1] / w_mm
    x0, _, y = scale_bar_mm(view)
    row = int(round(y * px_per_mm))
    white = (rgb[row - 1:row + 2] > 240).all(-1).any(0)  # the bar's rows
    cols = np.nonzero(white)[0]
    runs = np.split(cols, np.nonzero(np.diff(cols) > 1)[0] + 1)
    longest = max(runs, key=len)
    assert len(longest) == pytest.approx(SCALE_BAR_MM * px_per_mm, abs=2)
    assert longest[0] == pytest.approx(x0 * px_per_mm, abs=2)
    # the field: 2 * half_mm (to the voxel) around the finding
    assert w_mm == pytest.approx(2 * half_mm + SP, abs=SP)


def test_zoom_shows_the_finding_centred_and_outlined():
    pre, post, aff, ball = _phantom()
    view = zoom_view(pre, post, aff, CENTRE, ball, 12.0, "Focus 1", "#ff3030")
    img = view.picture.image
    assert img.shape == (31, 31)  # 12 mm / 0.8 mm = 15 voxels each side
    assert img[15, 15] == pytest.approx(200.0)  # the ball's centre in the middle
    assert img[0, 0] == 0.0
    assert view.outline.sum() == ball[:, :, 6].sum()  # the ball's cut through its centre
    rgb = zoom_rgb(view)
    red = (rgb[..., 0] > 180) & (rgb[..., 1] < 110) & (rgb[..., 2] < 110)
    yy, xx = np.nonzero(red[40:])  # below the burned-in title
    centre_px = np.array(rgb.shape[:2]) / 2
    r = np.hypot(yy + 40 - centre_px[0], xx - centre_px[1])
    px_per_mm = rgb.shape[1] / view.picture.size_mm[0]
    assert np.median(r) == pytest.approx(4.0 * px_per_mm, rel=0.2)  # the outline at the ball's edge
    assert zoom_png(view).startswith(b"\x89PNG")


def test_zoom_off_the_edge_is_padded_and_context_drawn():
    pre, post, aff, ball = _phantom()
    edge = CENTRE + np.array([-20.0, 0.0, 0.0])  # 5.6 mm inside the box's first column
    view = zoom_view(pre, post, aff, edge, ball, 20.0, "Ablation zone", "#7CFC00", context_mask=ball)
    assert view.picture.image.shape == (51, 51)
    assert view.context is not None and view.context[:, 25:].any() and not view.context[:, :25].any()
    img = view.picture.image
    assert (img[:, :18] == 0).all() and img[25, 25 + 25] == pytest.approx(200.0)  # padded; the ball


def test_caption_hook_takes_an_optional_location():
    assert finding_caption("Focus 1", "8 mm").startswith("Focus 1: 8 mm. First subtraction")
    text = finding_caption("Focus 1", "8 mm", "2 o'clock, 4 cm from the nipple")
    assert text.startswith("Focus 1: 8 mm, 2 o'clock, 4 cm from the nipple. ")
    assert "scale bar 10 mm" in text
