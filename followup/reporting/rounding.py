"""How numbers are written into the report: plain Python floats and lists, rounded once here."""

from __future__ import annotations

from typing import Any

import numpy as np


def rounded_list(v, nd: int = 2) -> Any:
    """An array (or None) rounded, as nested lists of Python floats."""
    return None if v is None else np.round(np.asarray(v, dtype=float), nd).tolist()


def rounded(v, nd: int) -> float:
    """A number rounded as a Python float (a float32 rounded in float32 would print 0.2399999)."""
    return round(float(v), nd)


def rounded_or_none(v: float | None, nd: int) -> float | None:
    return None if v is None else rounded(v, nd)
