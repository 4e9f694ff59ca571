"""Public entry point: ``load_dce_study(path)`` -> :class:`DCEStudy` (ordered DCE phases)."""

from __future__ import annotations

import datetime as _dt
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from followup.dicom.dce import select_dynamic
from followup.dicom.dce_order import contrast_flags
from followup.dicom.dce_series import IgnoredSeries, Selection
from followup.dicom.header_records import InstanceHeader, RejectedFile, ScanResult
from followup.dicom.scan import check_single_patient, scan_directory
from followup.dicom.stack import decode_volume, phase_geometry
from followup.errors import IngestError
from followup.volume import Volume

PHASE_AFFINE_TOL_MM = 1e-3


@dataclass(frozen=True, eq=False)
class Phase:
    """One time point of the dynamic as a volume.

    ``source`` is the decoded volume, or the function that decodes it on first use of ``volume``
    (phases an analysis never reads are never decoded; see ``load_dce_study(decode_phases=)``)."""

    index: int
    source: Volume | Callable[[], Volume] = field(repr=False)
    time_s: float
    series_uid: str
    sop_instance_uids: list[str]
    contrast: bool | None
    # 1-based frame number of each slice in its instance (1 for single-frame files): what a
    # reference to one slice of a multi-frame image names beside its SOP Instance UID
    frame_numbers: list[int] = field(default_factory=list)

    @cached_property
    def volume(self) -> Volume:
        return self.source if isinstance(self.source, Volume) else self.source()


@dataclass(frozen=True)
class DCEStudy:
    """A patient's DCE-MRI study: ordered phases (phases[0] = pre-contrast) plus provenance.

    ``patient_id`` is kept only to match the procedure record; never log or print it.
    """

    patient_id: str
    study_uid: str
    study_date: _dt.date | None
    study_time: str
    accession_number: str
    modality: str
    manufacturer: str
    laterality: str | None
    frame_of_reference_uid: str
    series_uids: list[str]
    series_description: str
    phases: list[Phase]
    ordering: str
    ignored_series: list[IgnoredSeries]
    rejected_files: list[RejectedFile]
    warnings: list[str]
    source_paths: list[Path] = field(default_factory=list)  # every file of the DCE dynamic
    # the header record of each of those files, in the same order (no second header read needed)
    instances: list[InstanceHeader] = field(default_factory=list, repr=False)

    def __repr__(self) -> str:  # keep the PatientID out of reprs/logs
        return (f"DCEStudy(study_uid={self.study_uid!r}, "
                f"phases={len(self.phases)}, ordering={self.ordering!r})")


def studies_in(scan: ScanResult) -> dict[str, list[InstanceHeader]]:
    """Instances grouped by StudyInstanceUID (insertion order = first seen)."""
    out: dict[str, list[InstanceHeader]] = {}
    for inst in scan.instances:
        out.setdefault(inst.study_uid, []).append(inst)
    return out


def raise_if_nothing_usable(scan: ScanResult) -> None:
    """``truncated`` if only truncated DICOM was found, ``no-dicom`` if no image at all."""
    if scan.instances:
        return
    trunc = [r for r in scan.rejected if r.reason.startswith("truncated")]
    if trunc:
        raise IngestError(f"{trunc[0].path}: {trunc[0].reason}", code="truncated")
    reasons = sorted({r.reason for r in scan.rejected})
    raise IngestError(
        f"no DICOM images found in {scan.root} ({scan.n_files} file(s) rejected: "
        f"{'; '.join(reasons[:5])})",
        code="no-dicom",
    )


def build_phases(sel: Selection, rejected: list[RejectedFile], where: str,
                 decode_phases: int | None = None) -> list[Phase]:
    """Check that the chosen dynamic's phases share one geometry and decode them: all of them, or
    the first ``decode_phases`` now and the others when first read."""
    uids = {s.uid for s in sel.dynamic.series}
    bad = [r for r in rejected if r.series_uid in uids]
    if bad:
        raise IngestError(f"{bad[0].path} (DCE series {bad[0].series_uid}): {bad[0].reason}",
                          code="truncated")
    flags, _ = contrast_flags(sel.dynamic.units)
    cache: dict = {}
    geoms = []
    for idx, unit in enumerate(sel.dynamic.units):
        label = f"{where}, phase {idx} (series {unit.series_uid} '{unit.description}')"
        first = unit.frames[0].inst
        geoms.append(((first.columns, first.rows, len(unit.frames)),
                      phase_geometry(unit.frames, label)))
    ref_shape, ref = geoms[0]
    for idx, (shape, g) in enumerate(geoms[1:], start=1):
        if shape != ref_shape or not np.allclose(g.affine, ref.affine, atol=PHASE_AFFINE_TOL_MM):
            raise IngestError(
                f"{where}: phase {idx} (series {sel.dynamic.units[idx].series_uid}) has shape "
                f"{shape} and origin {np.round(g.affine[:3, 3], 3).tolist()}, phase 0 has shape "
                f"{ref_shape} and origin {np.round(ref.affine[:3, 3], 3).tolist()}; all phases "
                "must share one geometry",
                code="inconsistent-phase-geometry",
            )
    phases: list[Phase] = []
    for idx, (unit, t, c) in enumerate(zip(sel.dynamic.units, sel.dynamic.times_s, flags, strict=True)):
        geom = geoms[idx][1]
        sops = [unit.frames[int(i)].sop_uid for i in geom.order]

        def decode(frames=unit.frames, geom=geom) -> Volume:
            return decode_volume(frames, geom, cache)

        source = decode() if decode_phases is None or idx < decode_phases else decode
        frame_numbers = [unit.frames[int(i)].frame.index + 1 for i in geom.order]
        phases.append(Phase(idx, source, float(t), unit.series_uid, sops, c, frame_numbers))
    return phases


def study_from_instances(instances: list[InstanceHeader], rejected: list[RejectedFile],
                         where: str, decode_phases: int | None = None) -> DCEStudy:
    """Select, order and decode the DCE dynamic of one study's instances."""
    sel = select_dynamic(instances, where)
    phases = build_phases(sel, rejected, where, decode_phases)
    _, cwarn = contrast_flags(sel.dynamic.units)
    dyn_insts = [f.inst for f in sel.dynamic.units[0].frames]
    by_path = {f.inst.path: f.inst for u in sel.dynamic.units for f in u.frames}
    dyn_files = [by_path[p] for p in sorted(by_path)]
    first = dyn_insts[0]
    lat = next((i.laterality for s in sel.dynamic.series for i in s.instances if i.laterality),
               None)
    return DCEStudy(
        patient_id=first.patient_id,
        study_uid=first.study_uid,
        study_date=first.study_date,
        study_time=first.study_time,
        accession_number=first.accession_number,
        modality=first.modality,
        manufacturer=first.manufacturer,
        laterality=lat,
        frame_of_reference_uid=first.frame_of_reference_uid,
        series_uids=[s.uid for s in sel.dynamic.series],
        series_description=first.series_description,
        phases=phases,
        ordering=sel.dynamic.ordering,
        ignored_series=sel.ignored,
        rejected_files=rejected,
        warnings=sel.warnings + cwarn,
        source_paths=[i.path for i in dyn_files],
        instances=dyn_files,
    )


def load_dce_study(path: str | os.PathLike[str], decode_phases: int | None = None) -> DCEStudy:
    """Load the DCE dynamic of the ONE study of ONE patient found under ``path``.

    ``decode_phases``: decode only the first N phases now, the others when first read (an
    analysis reads two phases of the baseline). Geometry is checked for every phase either way."""
    scan = scan_directory(path)
    check_single_patient(scan)
    raise_if_nothing_usable(scan)
    studies = studies_in(scan)
    if len(studies) > 1:
        desc = ", ".join(f"{uid} ({insts[0].study_date or 'no date'})"
                         for uid, insts in studies.items())
        raise IngestError(
            f"{Path(path)} holds {len(studies)} studies ({desc}); give the folder of one study",
            code="multiple-studies",
        )
    return study_from_instances(scan.instances, list(scan.rejected), str(Path(path)), decode_phases)
