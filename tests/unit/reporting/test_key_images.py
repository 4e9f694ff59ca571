"""The whole-crop key image outlines what matters (issue 24 item 7): touching lobes of suspicious
foci are one outline with one label, separate foci keep theirs."""

from __future__ import annotations

import numpy as np

from followup.reporting.key_images import focus_groups


def _disc(shape: tuple[int, int], centre: tuple[int, int], r: float) -> np.ndarray:
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    return np.hypot(yy - centre[0], xx - centre[1]) <= r


def test_touching_lobes_are_one_outline_with_one_label():
    a, b = _disc((40, 40), (20, 14), 4), _disc((40, 40), (20, 21), 4)  # touching
    c = _disc((40, 40), (5, 35), 2)  # apart
    groups = focus_groups([(1, a), (2, b), (3, c)])
    assert [label for label, _ in groups] == ["1,2", "3"]
    np.testing.assert_array_equal(groups[0][1], a | b)
    np.testing.assert_array_equal(groups[1][1], c)
    assert focus_groups([]) == []
