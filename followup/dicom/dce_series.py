"""The series of a study as the DCE search sees them: each series classified (ignored with a
reason, or a candidate) and each candidate split into time points (``PhaseUnit``), from header
records only (no pixels). Every frame (a single-frame file, or one frame of an Enhanced/Legacy-
Converted MR object) is handled the same way."""

from __future__ import annotations

import datetime as _dt
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import numpy as np

from followup.dicom.header_records import MR_SOP_CLASSES, InstanceHeader
from followup.dicom.stack import FrameRef, normal_of

T1_MAX_TR_MS = 100.0
MIN_SLICES = 5


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
    acq_seconds: float | None  # absolute if dates known, else seconds of day (see dce_order)
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
