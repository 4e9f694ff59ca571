"""Time order of the DCE phases: by temporal position, trigger time, acquisition time or numbered
series description, and whether the contrast attributes agree with that order."""

from __future__ import annotations

import itertools
import re

import numpy as np

from followup.dicom.dce_series import PhaseUnit
from followup.errors import IngestError

TIME_EPS_S = 0.01


_PRE = re.compile(r"(?<![a-z])(pre|precontrast|nativ|native|baseline)(?![a-z])", re.I)
_NUM = re.compile(r"(\d+)")


def description_rank(desc: str) -> int | None:
    """Rank from a series description: 'pre' -> 0, otherwise the last number, 'post' -> 1."""
    text = desc.lower()
    if _PRE.search(text) and "post" not in text:
        return 0
    nums = _NUM.findall(re.sub(r"\bt[12]\b|\d+\s*(mm|ms|d)\b|\b[23]d\b", " ", text))
    if nums:
        return int(nums[-1])
    if "post" in text:
        return 1
    return None


def _acq_times(units: list[PhaseUnit]) -> list[float] | None:
    """Acquisition times of the units, midnight-safe; None if any unit lacks one."""
    vals = [u.acq_seconds for u in units]
    if any(v is None for v in vals):
        return None
    v = np.array(vals, dtype=float)
    if not all(u.has_date for u in units) and v.max() - v.min() > 43200:
        v = np.where(v < 43200, v + 86400, v)  # times of day that cross midnight
    return v.tolist()


def _distinct(vals: list[float | int | None], eps: float) -> bool:
    if any(v is None for v in vals):
        return False
    s = np.sort(np.asarray(vals, dtype=float))
    return bool(np.all(np.diff(s) > eps))


def order_units(units: list[PhaseUnit], temporal_source: str) -> tuple[list[PhaseUnit], str,
                                                                      list[float], list[str]]:
    """Order time points; returns (units, ordering attribute, times in s from first, warnings)."""
    warns: list[str] = []
    acq = _acq_times(units)
    keys: list[float] | None = None
    method = ""
    if _distinct([u.temporal_index for u in units], 0):
        keys, method = [float(u.temporal_index) for u in units], temporal_source  # type: ignore[arg-type]
    elif _distinct([u.trigger_time for u in units], 0.5):
        keys, method = [float(u.trigger_time) for u in units], "TriggerTime"  # type: ignore[arg-type]
    elif acq is not None and _distinct(acq, TIME_EPS_S):  # type: ignore[arg-type]
        keys, method = acq, "AcquisitionTime"
    else:
        ranks = [description_rank(u.description) for u in units]
        if _distinct(ranks, 0):  # type: ignore[arg-type]
            keys, method = [float(r) for r in ranks], "SeriesDescription"  # type: ignore[arg-type]
    if keys is None:
        seen = "; ".join(f"{u.series_uid} '{u.description}'" for u in units)
        raise IngestError(
            "cannot order the DCE phases in time: no TemporalPositionIdentifier, TriggerTime, "
            f"AcquisitionTime or numbered SeriesDescription distinguishes them ({seen})",
            code="unordered-phases",
        )
    order = np.argsort(keys, kind="stable")
    units = [units[i] for i in order]
    if acq is not None:
        t = np.array([acq[i] for i in order])
        if method != "AcquisitionTime" and np.any(np.diff(t) < -TIME_EPS_S):
            warns.append(f"phases ordered by {method} but their acquisition times are not "
                         "increasing in that order")
        times = (t - t[0]).tolist()
    elif all(u.trigger_time is not None for u in units):
        times = ((np.array([u.trigger_time for u in units]) - units[0].trigger_time) / 1000.0
                 ).tolist()
    else:
        times = [float("nan")] * len(units)
        warns.append("phase acquisition times unknown (no AcquisitionTime/TriggerTime): "
                     "time_s is NaN")
    return units, method, times, warns


def contrast_flags(units: list[PhaseUnit]) -> tuple[list[bool | None], list[str]]:
    """Per-phase 'contrast given' from contrast attributes, and warnings if they contradict time."""
    flags: list[bool | None] = []
    for u in units:
        if u.contrast_administered is not None:
            flags.append(u.contrast_administered)
        elif u.contrast_agent:
            if u.contrast_start is not None and u.acq_seconds is not None:
                flags.append(u.acq_seconds % 86400 >= u.contrast_start - TIME_EPS_S)
            else:
                flags.append(True)
        else:
            flags.append(None)
    if all(f is None for f in flags):
        return flags, []
    flags = [False if f is None else f for f in flags]
    warns = []
    if flags[0]:
        warns.append("contrast attributes say contrast was already given in the earliest phase "
                     "(used as pre-contrast anyway)")
    if not any(flags[1:]):
        warns.append("contrast attributes say no contrast was given in any post-contrast phase")
    elif any(a and not b for a, b in itertools.pairwise(flags)):
        warns.append("contrast attributes disagree with the time order of the phases")
    return flags, warns
