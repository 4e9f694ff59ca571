"""The plain values of the report's typed model (:mod:`followup.reporting.model`): numpy values
turned into plain JSON types before validation, non-finite numbers as null."""

from __future__ import annotations

import math
from typing import Annotated, Any

import numpy as np
from pydantic import BeforeValidator


def plain(value: Any) -> Any:
    """numpy scalars and arrays -> Python ``bool``/``int``/``float``/``str``/lists, recursively
    through dicts, lists and tuples (tuples become lists); anything else as it is."""
    if isinstance(value, np.ndarray):
        return value.tolist()  # Python scalars, nested lists
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def _finite_or_none(value: Any) -> Any:
    value = plain(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isfinite(value):
        return None
    return value


FiniteOrNone = Annotated[float | None, BeforeValidator(_finite_or_none)]
Point = tuple[float, float, float]  # LPS, mm


__all__ = ["FiniteOrNone", "Point", "plain"]
