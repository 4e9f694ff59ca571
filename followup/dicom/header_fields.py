"""Header fields: the frames, sequence parameters, contrast and laterality of an opened header
(single-frame, enhanced and legacy-converted multi-frame alike), assembled into its record."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from followup.dicom.header_records import AcquisitionHeader, FrameHeader, InstanceHeader
from followup.dicom.header_values import (
    as_float,
    as_floats,
    as_int,
    fast_value,
    first_item,
    group_value,
    parse_da,
    parse_dt,
    parse_tm,
    text_value,
)


def _image_type(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    vals = [value] if isinstance(value, str) else value
    return tuple(str(v).strip().upper() for v in vals)


def single_frame(ds: Any) -> FrameHeader:
    date, tm = parse_dt(fast_value(ds, "AcquisitionDateTime"))
    if tm is None:
        date, tm = parse_da(fast_value(ds, "AcquisitionDate")), parse_tm(fast_value(ds, "AcquisitionTime"))
    return FrameHeader(
        index=0,
        ipp=as_floats(fast_value(ds, "ImagePositionPatient"), 3),  # type: ignore[arg-type]
        iop=as_floats(fast_value(ds, "ImageOrientationPatient"), 6),  # type: ignore[arg-type]
        pixel_spacing=as_floats(fast_value(ds, "PixelSpacing"), 2),  # type: ignore[arg-type]
        slope=as_float(fast_value(ds, "RescaleSlope")) or 1.0,
        intercept=as_float(fast_value(ds, "RescaleIntercept")) or 0.0,
        temporal_index=as_int(fast_value(ds, "TemporalPositionIdentifier")),
        trigger_time=as_float(fast_value(ds, "TriggerTime")),
        acq_date=date,
        acq_time=tm,
    )


def multi_frames(ds: Any, n_frames: int) -> tuple[FrameHeader, ...]:
    shared = first_item(ds, "SharedFunctionalGroupsSequence")
    per = ds.get("PerFrameFunctionalGroupsSequence")
    top_slope = as_float(ds.get("RescaleSlope"))
    top_icpt = as_float(ds.get("RescaleIntercept"))
    frames = []
    for f in range(n_frames):
        item = per[f] if per is not None and len(per) > f else None
        groups = (item, shared)
        slope = as_float(group_value(groups, "PixelValueTransformationSequence", "RescaleSlope"))
        icpt = as_float(group_value(groups, "PixelValueTransformationSequence", "RescaleIntercept"))
        tpi = as_int(group_value(groups, "FrameContentSequence", "TemporalPositionIndex"))
        if tpi is None:
            tpi = as_int(group_value(groups, "UnassignedPerFrameConvertedAttributesSequence",
                               "TemporalPositionIdentifier"))
        date, tm = parse_dt(group_value(groups, "FrameContentSequence", "FrameAcquisitionDateTime"))
        if tm is None:
            conv = "UnassignedPerFrameConvertedAttributesSequence"
            date = parse_da(group_value(groups, conv, "AcquisitionDate"))
            tm = parse_tm(group_value(groups, conv, "AcquisitionTime"))
        trig = as_float(group_value(groups, "UnassignedPerFrameConvertedAttributesSequence",
                              "TriggerTime"))
        if trig is None:
            trig = as_float(group_value(groups, "CardiacSynchronizationSequence",
                                  "NominalCardiacTriggerDelayTime"))
        slope = slope if slope not in (None, 0.0) else (top_slope if top_slope else 1.0)
        frames.append(
            FrameHeader(
                index=f,
                ipp=as_floats(group_value(groups, "PlanePositionSequence", "ImagePositionPatient"), 3),  # type: ignore[arg-type]
                iop=as_floats(group_value(groups, "PlaneOrientationSequence",  # type: ignore[arg-type]
                                    "ImageOrientationPatient"), 6),
                pixel_spacing=as_floats(group_value(groups, "PixelMeasuresSequence", "PixelSpacing"), 2),  # type: ignore[arg-type]
                slope=slope,
                intercept=icpt if icpt is not None else (top_icpt or 0.0),
                temporal_index=tpi,
                trigger_time=trig,
                acq_date=date,
                acq_time=tm,
            )
        )
    return tuple(frames)


def _sequence_params(ds: Any) -> tuple[float | None, float | None, float | None]:
    shared = first_item(ds, "SharedFunctionalGroupsSequence")
    tr = as_float(fast_value(ds, "RepetitionTime"))
    te = as_float(fast_value(ds, "EchoTime"))
    fa = as_float(fast_value(ds, "FlipAngle"))
    if tr is None:
        tr = as_float(group_value((shared,), "MRTimingAndRelatedParametersSequence", "RepetitionTime"))
    if fa is None:
        fa = as_float(group_value((shared,), "MRTimingAndRelatedParametersSequence", "FlipAngle"))
    if te is None:
        te = as_float(group_value((shared,), "MREchoSequence", "EffectiveEchoTime"))
    return tr, te, fa


def _contrast(ds: Any) -> tuple[str | None, float | None, bool | None]:
    agent = text_value(ds, "ContrastBolusAgent") or None
    start = parse_tm(fast_value(ds, "ContrastBolusStartTime"))
    administered: bool | None = None
    shared = first_item(ds, "SharedFunctionalGroupsSequence")
    usage = group_value((shared,), "ContrastBolusUsageSequence", "ContrastBolusAgentAdministered")
    if usage is not None:
        administered = str(usage).upper() == "YES"
    enh = first_item(ds, "EnhancedContrastBolusSequence")
    if enh is not None and agent is None:
        agent = "enhanced contrast/bolus"
    return agent, start, administered


def _laterality(ds: Any) -> str | None:
    for kw in ("Laterality", "ImageLaterality"):
        v = text_value(ds, kw)
        if v:
            return v
    shared = first_item(ds, "SharedFunctionalGroupsSequence")
    v = group_value((shared,), "FrameAnatomySequence", "FrameLaterality")
    return str(v) if v else None


def _codes(value: Any) -> tuple[str, ...]:
    """A CS value (one or several) as upper-case strings, empty ones left out."""
    if value is None:
        return ()
    vals = [value] if isinstance(value, str) else list(value)
    return tuple(t for t in (str(v).strip().upper() for v in vals) if t)


def _mr_value(ds: Any, keyword: str) -> Any:
    """An acquisition attribute at the top level or, in a Legacy Converted Enhanced MR object, in
    the shared Unassigned Converted Attributes."""
    v = fast_value(ds, keyword)
    if v is None:
        shared = first_item(ds, "SharedFunctionalGroupsSequence")
        v = group_value((shared,), "UnassignedSharedConvertedAttributesSequence", keyword)
    return v


def acquisition(ds: Any) -> AcquisitionHeader:
    """How the image was acquired (the report's technique line): what the header says, no more."""
    thickness = as_float(fast_value(ds, "SliceThickness"))
    if thickness is None:
        per = ds.get("PerFrameFunctionalGroupsSequence")
        groups = (per[0] if per else None, first_item(ds, "SharedFunctionalGroupsSequence"))
        thickness = as_float(group_value(groups, "PixelMeasuresSequence", "SliceThickness"))
    name = _mr_value(ds, "SequenceName")
    return AcquisitionHeader(
        field_strength_t=as_float(_mr_value(ds, "MagneticFieldStrength")),
        scanning_sequence=_codes(_mr_value(ds, "ScanningSequence")),
        sequence_variant=_codes(_mr_value(ds, "SequenceVariant")),
        scan_options=_codes(_mr_value(ds, "ScanOptions")),
        sequence_name=str(name).strip() if name is not None else "",
        mr_acquisition_type=(_codes(_mr_value(ds, "MRAcquisitionType")) or ("",))[0],
        echo_pulse_sequence=(_codes(_mr_value(ds, "EchoPulseSequence")) or ("",))[0],
        spectrally_selected_suppression=(_codes(_mr_value(ds, "SpectrallySelectedSuppression")) or ("",))[0],
        slice_thickness_mm=thickness,
    )


def instance_header(ds: Any, path: Path, size: int, ts: str, value_offset: int | None,
                     series_uid: str, sop_class: str, layout: tuple[int, int, int, int, int],
                     multiframe: bool, frames: tuple[FrameHeader, ...]) -> InstanceHeader:
    """The header record of a file whose pixel data checked out."""
    rows, cols, n_frames, spp, bits = layout
    tr, te, fa = _sequence_params(ds)
    agent, start, administered = _contrast(ds)
    return InstanceHeader(
        path=path,
        file_size=size,
        transfer_syntax=ts,
        pixel_value_offset=value_offset,
        patient_id=text_value(ds, "PatientID"),
        study_uid=fast_value(ds, "StudyInstanceUID") or "",
        series_uid=series_uid,
        sop_uid=fast_value(ds, "SOPInstanceUID") or "",
        sop_class_uid=sop_class,
        modality=fast_value(ds, "Modality") or "",
        series_number=as_int(fast_value(ds, "SeriesNumber")),
        series_description=text_value(ds, "SeriesDescription"),
        instance_number=as_int(fast_value(ds, "InstanceNumber")),
        image_type=_image_type(fast_value(ds, "ImageType")),
        rows=rows,
        columns=cols,
        n_frames=n_frames,
        samples_per_pixel=spp,
        bits_allocated=bits,
        bits_stored=int(fast_value(ds, "BitsStored") or bits),
        pixel_representation=int(fast_value(ds, "PixelRepresentation") or 0),
        slice_thickness=as_float(fast_value(ds, "SliceThickness")),
        spacing_between_slices=as_float(fast_value(ds, "SpacingBetweenSlices")),
        repetition_time=tr,
        echo_time=te,
        flip_angle=fa,
        temporal_source="TemporalPositionIndex" if multiframe else "TemporalPositionIdentifier",
        contrast_agent=agent,
        contrast_start_time=start,
        contrast_administered=administered,
        laterality=_laterality(ds),
        study_date=parse_da(fast_value(ds, "StudyDate")),
        study_time=fast_value(ds, "StudyTime") or "",
        accession_number=text_value(ds, "AccessionNumber"),
        manufacturer=text_value(ds, "Manufacturer"),
        frame_of_reference_uid=fast_value(ds, "FrameOfReferenceUID") or "",
        frames=frames,
        high_bit=as_int(fast_value(ds, "HighBit")),
        acquisition=acquisition(ds),
    )
