"""Write a DCEStudy's phases as NIfTI files (RAS affine, as NIfTI expects)."""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np

from followup.dicom.study import DCEStudy


def write_nifti(study: DCEStudy, out_dir: str | os.PathLike[str]) -> list[Path]:
    """Write ``phase_00.nii.gz``, ``phase_01.nii.gz``... into ``out_dir``; return the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for phase in study.phases:
        vol = phase.volume
        img = nib.Nifti1Image(np.asarray(vol.data, dtype=np.float32), vol.ras_affine)
        img.set_qform(vol.ras_affine, code=1)  # scanner-anatomical
        img.set_sform(vol.ras_affine, code=1)
        img.header.set_xyzt_units("mm", "sec")
        img.header["descrip"] = f"phase {phase.index} t={phase.time_s:.1f}s"[:79].encode()
        path = out / f"phase_{phase.index:02d}.nii.gz"
        nib.save(img, path)
        paths.append(path)
    return paths
