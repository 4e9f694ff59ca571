"""DICOM ingestion: scan a folder, find the DCE dynamic, build ordered phase volumes.

Public API::

    from followup.dicom import load_dce_study, inspect_directory, write_nifti, scan_directory
    study = load_dce_study(path)  # one study of one patient
"""

from followup.dicom.dce_series import IgnoredSeries
from followup.dicom.header_records import RejectedFile, ScanResult
from followup.dicom.inspect import inspect_directory
from followup.dicom.nifti import write_nifti
from followup.dicom.scan import scan_directory
from followup.dicom.study import DCEStudy, Phase, load_dce_study
from followup.pseudonym import patient_ref

__all__ = [
    "DCEStudy",
    "IgnoredSeries",
    "Phase",
    "RejectedFile",
    "ScanResult",
    "inspect_directory",
    "load_dce_study",
    "patient_ref",
    "scan_directory",
    "write_nifti",
]
