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

import datetime as _dt
import itertools
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import numpy as np

from followup.dicom.header_records import MR_SOP_CLASSES, InstanceHeader
from followup.dicom.stack import FrameRef, normal_of
from followup.errors import IngestError

T1_MAX_TR_MS = 100.0
MIN_SLICES = 5
TIME_EPS_S = 0.01


@dataclass(frozen=True)
class IgnoredSeries:
    """A series found in the study that is not used, and why."""

    series_uid: str
    series_number: int | None
    description: str
    n_instances: int
    reason: str


@dataclass
class PhaseUnit:
    """One time point of one series: the frames acquired together."""

    series_uid: str
    description: str
    frames: list[FrameRef]
    temporal_index: int | None
    trigger_time: float | None
    acq_seconds: float | None  # absolute if dates known, else seconds of day (see _acq_times)
    has_date: bool
    contrast_agent: str | None
    contrast_start: float | None
    contrast_administered: bool | None


@dataclass(eq=False)
class SeriesInfo:
    """A series' header summary, its classification and its time points."""

    uid: str
    number: int | None
    description: str
    instances: list[InstanceHeader]
    frames: list[FrameRef]
    reason: str | None = None
    derived: bool = False
    iop: np.ndarray | None = None
    spacing: np.ndarray | None = None
    positions: np.ndarray | None = None  # distinct positions along the normal, sorted
    units: list[PhaseUnit] = field(default_factory=list)
    split_by: str | None = None
    no_geometry: bool = False

    @property
    def n_positions(self) -> int:
        return 0 if self.positions is None else len(self.positions)

    def ignored(self, reason: str | None = None) -> IgnoredSeries:
        return IgnoredSeries(self.uid, self.number, self.description, len(self.instances),
                             reason or self.reason or "")


@dataclass
class Dynamic:
    """The chosen DCE dynamic: ordered phase units and how they were ordered."""

    series: list[SeriesInfo]
    units: list[PhaseUnit]
    ordering: str
    times_s: list[float]
    warnings: list[str]


@dataclass
class Selection:
    dynamic: Dynamic
    ignored: list[IgnoredSeries]
    warnings: list[str]


# ----------------------------------------------------------------------------- helpers


def cluster_positions(d: np.ndarray, tol: float = 0.05) -> np.ndarray:
    """Label values of ``d`` so that values closer than ``tol`` mm share a label."""
    order = np.argsort(d)
    labels = np.empty(len(d), dtype=int)
    lab, prev = -1, None
    for i in order:
        if prev is None or d[i] - prev > tol:
            lab += 1
        labels[i] = lab
        prev = d[i]
    return labels


def _frame_seconds(f: FrameRef) -> tuple[float | None, bool]:
    fr = f.frame
    if fr.acq_time is None:
        return None, False
    if fr.acq_date is not None:
        epoch = _dt.datetime.combine(fr.acq_date, _dt.time()) - _dt.datetime(1970, 1, 1)
        return epoch.total_seconds() + fr.acq_time, True
    return fr.acq_time, False


def _common(values: list) -> object | None:
    s = set(values)
    return values[0] if len(s) == 1 else None


def _make_unit(series: SeriesInfo, frames: list[FrameRef]) -> PhaseUnit:
    secs = [_frame_seconds(f) for f in frames]
    acq = [s for s, _ in secs if s is not None]
    trig = [f.frame.trigger_time for f in frames if f.frame.trigger_time is not None]
    insts = {id(f.inst): f.inst for f in frames}.values()
    agent = next((i.contrast_agent for i in insts if i.contrast_agent), None)
    start = next((i.contrast_start_time for i in insts if i.contrast_start_time is not None), None)
    adm = next((i.contrast_administered for i in insts if i.contrast_administered is not None),
               None)
    return PhaseUnit(
        series_uid=series.uid,
        description=series.description,
        frames=frames,
        temporal_index=_common([f.frame.temporal_index for f in frames]),  # type: ignore[arg-type]
        trigger_time=min(trig) if len(trig) == len(frames) else None,
        acq_seconds=min(acq) if len(acq) == len(frames) else None,
        has_date=all(h for _, h in secs),
        contrast_agent=agent,
        contrast_start=start,
        contrast_administered=adm,
    )


# ----------------------------------------------------------------------------- classification


def _finite_geometry(f: FrameRef) -> bool:
    """The frame's position and orientation are both present and finite."""
    ipp, iop = f.frame.ipp, f.frame.iop
    return ipp is not None and iop is not None and bool(np.all(np.isfinite(iop)) and np.all(np.isfinite(ipp)))


def _classify(series: SeriesInfo) -> None:
    """Fill geometry summary and ``reason`` (None = candidate)."""
    first = series.instances[0]
    itype = set(first.image_type)
    series.derived = bool(itype & {"DERIVED", "SUBTRACTION", "SUB"}) or "SUBTRACT" in " ".join(itype)
    if first.modality and first.modality != "MR":
        series.reason = f"modality {first.modality}, not MR"
        return
    if first.sop_class_uid not in MR_SOP_CLASSES:
        series.reason = f"SOP class {first.sop_class_uid or 'unknown'} is not an MR image"
        return
    if any(i.samples_per_pixel != 1 for i in series.instances):
        series.reason = "colour (multi-sample) images"
        return
    geo = [f for f in series.frames if f.frame.ipp is not None and f.frame.iop is not None
           and f.frame.pixel_spacing is not None]
    if not geo:
        series.no_geometry = True
        series.reason = "no-geometry: no image position/orientation (plane position/orientation " \
                        "sequences absent)"
        return
    if "LOCALIZER" in itype:
        series.reason = "localizer (ImageType LOCALIZER)"
        return
    fin = [f for f in geo if _finite_geometry(f)]
    votes = Counter(tuple(np.round(f.frame.iop, 2)) for f in fin)  # type: ignore[arg-type]
    if votes:
        top, n_top = votes.most_common(1)[0]
        if len(votes) > 1 and n_top < 0.75 * len(fin):
            series.reason = "mixed slice orientations (localizer/scout)"
            return
        # a few odd slices in an otherwise consistent series: keep it, stacking will report them
        fin = [f for f in fin if tuple(np.round(f.frame.iop, 2)) == top]  # type: ignore[arg-type]
    ref = fin[0] if fin else geo[0]
    iop = np.asarray(ref.frame.iop, dtype=float)
    series.iop = iop
    series.spacing = np.asarray(ref.frame.pixel_spacing, dtype=float)
    normal = normal_of(iop)
    d = np.array([np.dot(np.asarray(f.frame.ipp, dtype=float), normal) for f in fin]) if fin else np.zeros(1)
    labels = cluster_positions(d)
    series.positions = np.array(sorted(d[labels == k].mean() for k in range(labels.max() + 1)))
    if series.n_positions < MIN_SLICES:
        series.reason = f"only {series.n_positions} slice position(s) (< {MIN_SLICES}: localizer?)"
        return
    tr = first.repetition_time
    if tr is not None and tr > T1_MAX_TR_MS:
        series.reason = (f"not a T1-weighted dynamic (RepetitionTime {tr:g} ms > "
                         f"{T1_MAX_TR_MS:g} ms)")
        return
    _split(series, normal)


def _split(series: SeriesInfo, normal: np.ndarray) -> None:
    """Split a candidate series into time points (PhaseUnits)."""
    frames = series.frames
    d = np.array([np.dot(f.frame.ipp, normal) if f.frame.ipp is not None else np.nan
                  for f in frames])
    finite = np.isfinite(d)
    labels = np.full(len(frames), -1, dtype=int)
    if finite.any():
        labels[finite] = cluster_positions(d[finite])
    # frames without a usable position each get their own label
    labels[~finite] = labels.max() + 1 + np.arange(int((~finite).sum()))
    counts = Counter(labels.tolist())
    n_max = max(counts.values())
    tpi = [f.frame.temporal_index for f in frames]
    if all(t is not None for t in tpi) and len(set(tpi)) > 1:
        groups: dict[object, list[FrameRef]] = defaultdict(list)
        for f, t in zip(frames, tpi, strict=True):
            groups[t].append(f)
        series.split_by = series.instances[0].temporal_source
        series.units = [_make_unit(series, groups[k]) for k in sorted(groups)]  # type: ignore[type-var]
        return
    if n_max > 1:
        attrs = (
            ("TriggerTime", [f.frame.trigger_time for f in frames]),
            ("AcquisitionTime", [_frame_seconds(f)[0] for f in frames]),
        )
        for name, vals in attrs:
            if any(v is None for v in vals) or len(set(vals)) < 2:
                continue
            if len(set(counts.values())) == 1:
                # every position occurs n_max times: the r-th earliest at each position -> phase r
                rank: dict[int, list[tuple[float, int]]] = defaultdict(list)
                for idx, (lab, v) in enumerate(zip(labels, vals, strict=True)):
                    rank[int(lab)].append((float(v), idx))  # type: ignore[arg-type]
                buckets: list[list[FrameRef]] = [[] for _ in range(n_max)]
                for items in rank.values():
                    for r, (_, idx) in enumerate(sorted(items)):
                        buckets[r].append(frames[idx])
            else:
                by_val: dict[float, list[FrameRef]] = defaultdict(list)
                for f, v in zip(frames, vals, strict=True):
                    by_val[round(float(v), 2)].append(f)  # type: ignore[arg-type]
                if len(by_val) != n_max:
                    continue
                buckets = [by_val[k] for k in sorted(by_val)]
            series.split_by = name
            series.units = [_make_unit(series, b) for b in buckets]
            return
    series.units = [_make_unit(series, list(frames))]


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


# ----------------------------------------------------------------------------- ordering


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


# ----------------------------------------------------------------------------- selection


def build_series(instances: list[InstanceHeader]) -> list[SeriesInfo]:
    """Group instances by SeriesInstanceUID and classify each series."""
    by_uid: dict[str, list[InstanceHeader]] = defaultdict(list)
    for inst in instances:
        by_uid[inst.series_uid].append(inst)
    out = []
    for uid, insts in by_uid.items():
        insts.sort(key=lambda i: (i.instance_number or 0, str(i.path)))
        frames = [FrameRef(i, fr) for i in insts for fr in i.frames]
        s = SeriesInfo(uid=uid, number=insts[0].series_number,
                       description=insts[0].series_description, instances=insts, frames=frames)
        _classify(s)
        out.append(s)
    out.sort(key=lambda s: (s.number if s.number is not None else 1 << 30, s.uid))
    return out


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
