"""``inspect_directory(path)``: a JSON-serialisable summary of what a folder holds.

Reports every patient (by pseudonymous ``patient_ref`` only), study and series, the DCE dynamic
that would be used per study (phases, times, ordering, geometry, intensity range), ignored
series and rejected files with reasons. A study whose DCE cannot be built is reported with its
error code and message instead of failing the whole inspection.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from dataclasses import asdict
from typing import Any

import numpy as np

from followup.dicom.dce_series import build_series
from followup.dicom.scan import check_single_patient, scan_directory
from followup.dicom.stack import orientation_label
from followup.dicom.study import DCEStudy, raise_if_nothing_usable, studies_in, study_from_instances
from followup.errors import IngestError
from followup.pseudonym import patient_ref


def _num(x: float) -> float | None:
    return None if not math.isfinite(x) else round(float(x), 6)


def _dce_summary(study: DCEStudy) -> dict[str, Any]:
    vol = study.phases[0].volume
    aff = vol.affine
    iop = np.concatenate([aff[:3, 0] / np.linalg.norm(aff[:3, 0]),
                          aff[:3, 1] / np.linalg.norm(aff[:3, 1])])
    phases = []
    for p in study.phases:
        d = p.volume.data
        phases.append({
            "index": p.index,
            "time_s": _num(p.time_s),
            "series_uid": p.series_uid,
            "contrast": p.contrast,
            "min": _num(float(d.min())),
            "mean": _num(float(d.mean(dtype=np.float64))),
            "max": _num(float(d.max())),
        })
    return {
        "series_uids": list(study.series_uids),
        "series_description": study.series_description,
        "n_phases": len(study.phases),
        "times_s": [_num(p.time_s) for p in study.phases],
        "ordering": study.ordering,
        "matrix": list(vol.shape),
        "spacing_mm": [round(float(s), 6) for s in vol.spacing],
        "orientation": orientation_label(iop),
        "affine_lps": np.round(aff, 6).tolist(),
        "laterality": study.laterality,
        "phases": phases,
    }


def inspect_directory(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Summarise the DICOM content of ``path`` (recursively) as a JSON-serialisable dict."""
    scan = scan_directory(path)
    check_single_patient(scan)
    raise_if_nothing_usable(scan)
    patients: dict[str, dict[str, Any]] = {}
    for study_uid, insts in studies_in(scan).items():
        ref = patient_ref(insts[0].patient_id)
        series = Counter((i.series_uid, i.series_number, i.series_description, i.modality)
                         for i in insts)
        entry: dict[str, Any] = {
            "study_uid": study_uid,
            "study_date": insts[0].study_date.isoformat() if insts[0].study_date else None,
            "series": [
                {"series_uid": uid, "series_number": num, "description": desc,
                 "modality": mod, "n_instances": n}
                for (uid, num, desc, mod), n in series.items()
            ],
            "dce": None,
            "error": None,
            "ignored_series": [],
            "warnings": [],
        }
        uids = {i.series_uid for i in insts}
        rejected = [r for r in scan.rejected if r.series_uid is None or r.series_uid in uids]
        try:
            study = study_from_instances(insts, rejected, f"study {study_uid}")
            entry["dce"] = _dce_summary(study)
            entry["ignored_series"] = [asdict(s) for s in study.ignored_series]
            entry["warnings"] = list(study.warnings)
        except IngestError as exc:
            entry["error"] = {"code": exc.code, "message": exc.message}
            entry["ignored_series"] = [asdict(s.ignored()) for s in build_series(insts)
                                       if s.reason is not None]
        patients.setdefault(ref, {"patient_ref": ref, "studies": []})["studies"].append(entry)
    return {
        "path": str(path),
        "n_files": scan.n_files,
        "n_instances": len(scan.instances),
        "patients": list(patients.values()),
        "rejected_files": [{"path": r.path, "reason": r.reason} for r in scan.rejected],
    }
