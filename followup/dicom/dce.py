"""Find the DCE dynamic among a study's series and put its phases in time order.

Works on header records only (no pixels). Every frame (a single-frame file, or one frame of an
Enhanced/Legacy-Converted MR object) is handled the same way, so the layouts "one series per
phase", "one series with all phases" and multi-frame objects share one code path:

1. classify each series (ignored with a reason, or a candidate);
2. split each candidate series into time points (``PhaseUnit``);
3. group compatible candidate series (geometry + sequence parameters) into dynamics;
4. choose the dynamic with the most phases (then most slices) and order its phases in time.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from followup.dicom.dce_order import order_units
from followup.dicom.dce_series import Dynamic, IgnoredSeries, Selection, SeriesInfo, build_series
from followup.dicom.header_records import InstanceHeader
from followup.errors import IngestError

# ----------------------------------------------------------------------------- grouping


def _close(a: float | None, b: float | None, rel: float, abs_: float) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return abs(a - b) <= max(abs_, rel * max(abs(a), abs(b)))


def _compatible(a: SeriesInfo, b: SeriesInfo) -> bool:
    ia, ib = a.instances[0], b.instances[0]
    if (ia.rows, ia.columns) != (ib.rows, ib.columns) or a.derived != b.derived:
        return False
    assert a.iop is not None and b.iop is not None and a.spacing is not None
    assert b.spacing is not None and a.positions is not None and b.positions is not None
    if np.abs(a.iop - b.iop).max() > 0.01 or np.abs(a.spacing - b.spacing).max() > 1e-3 * max(
            a.spacing.max(), 1.0):
        return False
    if not (_close(ia.repetition_time, ib.repetition_time, 0.05, 0.2)
            and _close(ia.echo_time, ib.echo_time, 0.05, 0.1)
            and _close(ia.flip_angle, ib.flip_angle, 0.0, 1.0)):
        return False
    lo = max(a.positions[0], b.positions[0])
    hi = min(a.positions[-1], b.positions[-1])
    return hi - lo > -1e-3  # slabs overlap


def _group(cands: list[SeriesInfo]) -> list[list[SeriesInfo]]:
    parent = list(range(len(cands)))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for i in range(len(cands)):
        for j in range(i + 1, len(cands)):
            if _compatible(cands[i], cands[j]):
                parent[find(i)] = find(j)
    groups: dict[int, list[SeriesInfo]] = defaultdict(list)
    for i, s in enumerate(cands):
        groups[find(i)].append(s)
    return list(groups.values())


def select_dynamic(instances: list[InstanceHeader], where: str) -> Selection:
    """Choose and order the DCE dynamic among ``instances`` (one study)."""
    series = build_series(instances)
    cands = [s for s in series if s.reason is None]
    ignored: list[IgnoredSeries] = [s.ignored() for s in series if s.reason is not None]
    warns: list[str] = []
    groups = _group(cands)
    dyn_groups = [g for g in groups if sum(len(s.units) for s in g) >= 2]
    handled: set[int] = set()
    originals = [g for g in dyn_groups if not g[0].derived]
    if originals:
        for g in dyn_groups:
            if g[0].derived:
                handled.add(id(g))
                ignored += [s.ignored("derived/subtraction images (original dynamic present)")
                            for s in g]
        dyn_groups = originals
    if not dyn_groups:
        for g in groups:
            ignored += [s.ignored("single-phase series, no other phase with matching geometry "
                                  "and sequence parameters") for s in g]
        seen = "; ".join(
            f"series {i.series_number} '{i.description}' ({i.n_instances} files): {i.reason}"
            for i in ignored) or "none"
        nogeo = [s for s in series if s.no_geometry]
        if nogeo:
            raise IngestError(
                f"{where}: no DCE series can be built: series {nogeo[0].number} "
                f"'{nogeo[0].description}' ({nogeo[0].instances[0].path.name}) has no plane "
                f"position/orientation. Series seen: {seen}",
                code="no-geometry",
            )
        raise IngestError(
            f"{where}: no DCE dynamic found (needs a pre-contrast and at least one post-contrast "
            f"T1 phase with the same geometry). Series seen: {seen}",
            code="no-dce",
        )
    dyn_groups.sort(key=lambda g: (sum(len(s.units) for s in g), max(s.n_positions for s in g)),
                    reverse=True)
    chosen = dyn_groups[0]
    if dyn_groups[0][0].derived:
        warns.append("only derived/subtraction images form a dynamic; using them")
    if len(dyn_groups) > 1:
        others = ", ".join(f"series {s.number} '{s.description}'" for g in dyn_groups[1:]
                           for s in g)
        warns.append(f"several dynamics qualify; chose the one with the most phases/slices "
                     f"({sum(len(s.units) for s in chosen)} phases), not {others}")
        for g in dyn_groups[1:]:
            ignored += [s.ignored("another dynamic with more phases/slices was chosen") for s in g]
    handled.update(id(g) for g in dyn_groups)
    for g in groups:
        if id(g) not in handled:
            ignored += [s.ignored("single-phase series not part of the dynamic") for s in g]
    units = [u for s in chosen for u in s.units]
    temporal_source = chosen[0].instances[0].temporal_source
    units, method, times, w = order_units(units, temporal_source)
    warns += w
    chosen_uids = {u.series_uid for u in units}
    chosen_series = [s for s in chosen if s.uid in chosen_uids]
    return Selection(Dynamic(chosen_series, units, method, times, w), ignored, warns)
