"""What an analysis gives back to PACS, and every warning, decided before anything is rendered.

:func:`plan_outputs` looks at the assessment and the follow-up's source images only (no DICOM
object is built): SR always; Encapsulated PDF always; SEG for a complete analysis whose
pre-contrast phase is single-frame images (SEG of multi-frame sources is not supported yet: a
warning says so). Each object's file and UIDs (derived, :mod:`followup.reporting.uids`) are
known here, so the finished report lists them and every renderer reads the same report.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydicom.uid import Comprehensive3DSRStorage, SegmentationStorage

from followup.dicom.study import DCEStudy
from followup.pipelines.assess import Assessment
from followup.reporting.encapsulated_pdf import ENCAPSULATED_PDF_STORAGE
from followup.reporting.model import DicomOutput
from followup.reporting.uids import output_uids

# The DICOM objects that go back to PACS: name -> (file in the report folder, SOP Class UID).
DICOM_OBJECTS = {
    "seg": ("seg.dcm", str(SegmentationStorage)),
    "sr": ("sr.dcm", str(Comprehensive3DSRStorage)),
    "pdf": ("report-pdf.dcm", str(ENCAPSULATED_PDF_STORAGE)),
}
NO_SEG_MULTIFRAME = ("no DICOM SEG: the follow-up's pre-contrast phase is part of a multi-frame "
                     "object (SEG of multi-frame sources not supported yet)")


@dataclass(frozen=True)
class OutputPlan:
    outputs: dict[str, DicomOutput]  # in the order they are made: seg (when made), sr, pdf
    warnings: tuple[str, ...]  # the analysis's warnings, then the outputs'


def single_frame_source(followup: DCEStudy) -> bool:
    """The pre-contrast phase is one single-frame image per slice (not frames of one object)."""
    uids = followup.phases[0].sop_instance_uids
    return len(set(uids)) == len(uids)


def seg_possible(a: Assessment) -> bool:
    return a.status == "complete" and a.segmentation is not None and a.roi is not None


def plan_outputs(a: Assessment, followup: DCEStudy, revision: int) -> OutputPlan:
    names, warnings = ["sr", "pdf"], list(a.warnings)
    if seg_possible(a):
        if single_frame_source(followup):
            names.insert(0, "seg")
        else:
            warnings.append(NO_SEG_MULTIFRAME)
    outputs = {}
    for name in names:
        file, sop_class = DICOM_OBJECTS[name]
        series_uid, sop_uid = output_uids(followup.study_uid, name, revision)
        outputs[name] = DicomOutput(file=file, series_instance_uid=series_uid,
                                    sop_instance_uid=sop_uid, sop_class_uid=sop_class)
    return OutputPlan(outputs, tuple(warnings))


__all__ = ["DICOM_OBJECTS", "NO_SEG_MULTIFRAME", "OutputPlan", "plan_outputs", "seg_possible",
           "single_frame_source"]
