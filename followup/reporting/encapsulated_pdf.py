"""The PDF report as a DICOM Encapsulated PDF (1.2.840.10008.5.1.4.1.1.104.1) for the PACS.

The instance belongs to the follow-up study: the Patient and General Study attributes are copied
from a follow-up image header (``source``) - never invented; an attribute the source lacks is
written empty where the IOD allows (type 2). It opens a new series (Modality DOC) and carries
the modules of the Encapsulated PDF IOD: Patient, General Study, Encapsulated Document Series,
General Equipment, SC Equipment (ConversionType WSD), Encapsulated Document and SOP Common.
Explicit VR Little Endian, written with a DICOM file meta header (``ds.save_as(path)``).
"""

from __future__ import annotations

import datetime as dt

import pydicom
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID, ExplicitVRLittleEndian

ENCAPSULATED_PDF_STORAGE = UID("1.2.840.10008.5.1.4.1.1.104.1")
IMPLEMENTATION_VERSION_NAME = "FOLLOWUP"

PATIENT_KEYWORDS = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex")
STUDY_KEYWORDS = ("StudyInstanceUID", "StudyDate", "StudyTime", "AccessionNumber",
                  "ReferringPhysicianName", "StudyID", "StudyDescription")


def _copy(target: Dataset, source: Dataset, keyword: str) -> None:
    """Copy an attribute as it is (VR and value); absent or empty -> empty (type 2)."""
    if keyword in source and source[keyword].value not in (None, ""):
        elem = source[keyword]
        target.add_new(elem.tag, elem.VR, elem.value)
    else:
        setattr(target, keyword, None)


def encapsulated_pdf(pdf: bytes, source: pydicom.Dataset, *, series_uid: str, sop_uid: str,
                     series_number: int = 9002, instance_number: int = 1,
                     title: str = "Residual tumour assessment after cryoablation",
                     manufacturer: str = "followup", software_version: str,
                     content_datetime: dt.datetime | None = None) -> FileDataset:
    """Wrap ``pdf`` in an Encapsulated PDF instance of ``source``'s study (a new series).

    ``content_datetime`` (default: now, local time) gives ContentDate/Time and the instance
    creation date/time; pass a fixed one for reproducible output.
    """
    if not pdf.startswith(b"%PDF"):
        raise ValueError("not a PDF document (no %PDF header)")
    if "StudyInstanceUID" not in source or not source.StudyInstanceUID:
        raise ValueError("source header has no StudyInstanceUID: cannot file the report in its study")
    when = content_datetime or dt.datetime.now()

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ENCAPSULATED_PDF_STORAGE
    meta.MediaStorageSOPInstanceUID = UID(sop_uid)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME

    ds = FileDataset("", Dataset(), file_meta=meta, preamble=b"\0" * 128)

    # SOP Common
    if "SpecificCharacterSet" in source:
        ds.SpecificCharacterSet = source.SpecificCharacterSet
    ds.SOPClassUID = ENCAPSULATED_PDF_STORAGE
    ds.SOPInstanceUID = UID(sop_uid)
    ds.InstanceCreationDate = when.strftime("%Y%m%d")
    ds.InstanceCreationTime = when.strftime("%H%M%S")

    # Patient, General Study: from the follow-up header
    for kw in PATIENT_KEYWORDS + STUDY_KEYWORDS:
        _copy(ds, source, kw)

    # Encapsulated Document Series
    ds.Modality = "DOC"
    ds.SeriesInstanceUID = UID(series_uid)
    ds.SeriesNumber = int(series_number)
    ds.SeriesDescription = title[:64]

    # General Equipment + SC Equipment
    ds.Manufacturer = manufacturer
    ds.SoftwareVersions = software_version
    ds.ConversionType = "WSD"  # workstation

    # Encapsulated Document
    ds.InstanceNumber = int(instance_number)
    ds.ContentDate = when.strftime("%Y%m%d")
    ds.ContentTime = when.strftime("%H%M%S")
    ds.AcquisitionDateTime = None  # type 2: not acquired
    ds.BurnedInAnnotation = "YES"  # the PDF shows the patient's identity
    ds.DocumentTitle = title
    code = Dataset()
    code.CodeValue = "18748-4"
    code.CodingSchemeDesignator = "LN"
    code.CodeMeaning = "Diagnostic imaging study"
    ds.ConceptNameCodeSequence = [code]
    if "SOPClassUID" in source and "SOPInstanceUID" in source:
        # the report is derived from the follow-up images (type 1C: present when derived)
        ref = Dataset()
        ref.ReferencedSOPClassUID = source.SOPClassUID
        ref.ReferencedSOPInstanceUID = source.SOPInstanceUID
        ds.SourceInstanceSequence = [ref]
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.EncapsulatedDocumentLength = len(pdf)  # before padding
    ds.EncapsulatedDocument = pdf + (b"\0" if len(pdf) % 2 else b"")
    return ds


__all__ = ["ENCAPSULATED_PDF_STORAGE", "encapsulated_pdf"]
