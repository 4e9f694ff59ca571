"""A cohort of distinct synthetic patients, cheaply: copies of a few generated study pairs, each
with a new identity (Patient ID, name, accession numbers) and new UIDs for everything the pair
minted (studies, series, instances, frames of reference), plus its own procedure record.

Why copies: generating a pair renders every phase of two studies (about 2 s for a small pair);
rewriting headers is several times cheaper, and for load tests and benchmarks only the identities
and UIDs must be distinct (what the service keys on), not the pixels. UIDs are name-based UUIDs
under ``2.25`` made from the copy's index and the original UID, so a copy is deterministic and
references between objects of a pair stay consistent.

Layout written by ``make_cohort(OUT, n)``::

    OUT/templates/<scenario>-<seed>/          the generated pairs that are copied
    OUT/case-NNN/baseline/, followup/         the copy's DICOM files (named by SOP Instance UID)
    OUT/case-NNN/procedure.json               its procedure record (its own Patient ID)
    OUT/cohort.json                           manifest: per case the study UIDs and instance counts
"""

from __future__ import annotations

import json
import os
import uuid
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import pydicom
from pydicom.uid import UID_dictionary

from followup.synth.generate import generate_pair

_NAMESPACE = uuid.UUID("0b7c9e1e-3d57-4a8e-b7f4-5f0f2f6c1a21")
DEFAULT_TEMPLATES: tuple[tuple[str, int], ...] = (("residual", 1), ("complete", 2))
STUDIES = ("baseline", "followup")


@dataclass(frozen=True)
class CohortCase:
    index: int
    patient_id: str
    folder: str  # the case's folder (baseline/, followup/, procedure.json)
    template: str
    baseline_study_uid: str
    followup_study_uid: str
    baseline_instances: int
    followup_instances: int
    baseline_bytes: int
    followup_bytes: int

    @property
    def path(self) -> Path:
        return Path(self.folder)

    @property
    def instances(self) -> int:
        return self.baseline_instances + self.followup_instances

    @property
    def nbytes(self) -> int:
        return self.baseline_bytes + self.followup_bytes


def _new_uid(index: int, old: str) -> str:
    return f"2.25.{uuid.uuid5(_NAMESPACE, f'{index}|{old}').int}"


def _remap(ds: pydicom.Dataset, index: int) -> None:
    """Replace every UID the pair minted (not the standard's class/syntax UIDs), nested too.

    Only UI elements and sequences are converted from their raw bytes (the rest stays raw: fast)."""
    for raw in list(ds.elements()):
        if raw.VR == "SQ":
            for item in ds[raw.tag].value:
                _remap(item, index)
        elif raw.VR == "UI":
            elem = ds[raw.tag]
            if not elem.value:
                continue
            if elem.VM > 1:
                elem.value = [v if v in UID_dictionary else _new_uid(index, str(v)) for v in elem.value]
            elif str(elem.value) not in UID_dictionary:
                elem.value = _new_uid(index, str(elem.value))


def copy_study(src: Path, dst: Path, index: int, patient_id: str, role: str) -> tuple[str, int, int]:
    """Copy one study folder with the new identity; return (study UID, instances, bytes)."""
    dst.mkdir(parents=True, exist_ok=True)
    study_uid, n, nbytes = "", 0, 0
    for f in sorted(src.glob("*.dcm")):
        ds = pydicom.dcmread(f)
        _remap(ds, index)
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.PatientID = patient_id
        ds.PatientName = f"LOAD^PATIENT^{index:03d}"
        ds.AccessionNumber = f"LD{index:05d}{role[0].upper()}"
        out = dst / f"{ds.SOPInstanceUID}.dcm"
        ds.save_as(out, enforce_file_format=True)
        study_uid = str(ds.StudyInstanceUID)
        n += 1
        nbytes += out.stat().st_size
    return study_uid, n, nbytes


def _templates(out: Path, templates: tuple[tuple[str, int], ...], vendor: str) -> list[Path]:
    paths = []
    for scenario, seed in templates:
        p = out / "templates" / f"{scenario}-{seed}"
        if not (p / "truth.json").exists():
            generate_pair(p, scenario, seed, vendor, "small")
        paths.append(p)
    return paths


def make_cohort(out: Path | str, n: int, *, templates: tuple[tuple[str, int], ...] = DEFAULT_TEMPLATES,
                vendor: str = "per-phase") -> list[CohortCase]:
    """``n`` distinct patients, each a baseline + follow-up pair with its procedure record.

    Reuses ``OUT/cohort.json`` when it describes the same request (benchmarks cache the cohort)."""
    out = Path(out)
    manifest = out / "cohort.json"
    request = {"n": n, "templates": [list(t) for t in templates], "vendor": vendor}
    if manifest.exists():
        saved = json.loads(manifest.read_text())
        if saved.get("request") == request:
            return [CohortCase(**c) for c in saved["cases"]]
    sources = _templates(out, templates, vendor)
    jobs = {(i, role): (sources[i % len(sources)] / role, out / f"case-{i:03d}" / role, i, f"LOAD{i:05d}", role)
            for i in range(n) for role in STUDIES}
    with ProcessPoolExecutor(max_workers=min(len(jobs), os.cpu_count() or 1)) as pool:
        futures = {key: pool.submit(copy_study, *args) for key, args in jobs.items()}
        copied = {key: f.result() for key, f in futures.items()}
    cases = []
    for i in range(n):
        src = sources[i % len(sources)]
        case_dir = out / f"case-{i:03d}"
        patient_id = f"LOAD{i:05d}"
        info = {role: copied[(i, role)] for role in STUDIES}
        record = json.loads((src / "procedure.json").read_text())
        record["patient_id"] = patient_id
        (case_dir / "procedure.json").write_text(json.dumps(record, indent=2) + "\n")
        cases.append(CohortCase(
            index=i, patient_id=patient_id, folder=str(case_dir), template=src.name,
            baseline_study_uid=info["baseline"][0], followup_study_uid=info["followup"][0],
            baseline_instances=info["baseline"][1], followup_instances=info["followup"][1],
            baseline_bytes=info["baseline"][2], followup_bytes=info["followup"][2]))
    manifest.write_text(json.dumps({"request": request, "cases": [asdict(c) for c in cases]}, indent=2) + "\n")
    return cases


def sending_lanes(cases: list[CohortCase], lanes: int) -> list[list[Path]]:
    """Study folders per sending association slot, round-robin over patients.

    Within a lane each patient's baseline goes before its follow-up, as a PACS forwarding prior
    studies would: a follow-up is then never declared stable before its baseline (a follow-up
    analysed without its baseline is deferred and resumed later: a second analysis revision)."""
    out: list[list[Path]] = [[] for _ in range(max(1, lanes))]
    for c in cases:
        out[c.index % len(out)] += [c.path / "baseline", c.path / "followup"]
    return [lane for lane in out if lane]
