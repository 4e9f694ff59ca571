"""``seg.dcm``: binary DICOM Segmentation of the analysis on the follow-up DCE geometry (highdicom).

Segments: 1 ablation zone, 2 enhancing rim, 3 treated tumour + margin mapped from the baseline,
then one per suspicious focus. Frames follow the pre-contrast phase's source images (single-frame
MR) that the analysis box covers; the SEG is derived from them and shares their frame of
reference, patient and study.
"""

from __future__ import annotations

from dataclasses import dataclass

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.coding import Code

from followup.pipelines.assess import ALGORITHM_NAME, ALGORITHM_VERSION, Assessment
from followup.reporting import codes
from followup.reporting.equipment import stamp_product
from followup.reporting.uids import derived_uid
from followup.volume import Volume

MANUFACTURER = "followup"


@dataclass(frozen=True)
class SegmentSpec:
    number: int
    label: str
    category: Code | hd.sr.CodedConcept
    type: Code | hd.sr.CodedConcept
    mask: np.ndarray  # bool on the ROI grid


# Display colours (sRGB), one per segment and distinct: zone, rim, target, then the foci.
SEGMENT_RGB = [(255, 215, 0), (0, 170, 255), (120, 220, 120), (230, 30, 30), (255, 0, 200),
               (255, 128, 0), (150, 70, 255), (0, 200, 200)]


def cielab_colour(number: int) -> list[int]:
    """Segment ``number``'s RecommendedDisplayCIELabValue (DICOM's scaled CIELab, 0-65535)."""
    c = np.asarray(SEGMENT_RGB[(number - 1) % len(SEGMENT_RGB)], dtype=float) / 255.0
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    xyz = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722],
                    [0.0193, 0.1192, 0.9505]]) @ linear / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    lab = (116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2]))
    scaled = (lab[0] / 100, (lab[1] + 128) / 255, (lab[2] + 128) / 255)
    return [int(round(min(max(v, 0.0), 1.0) * 65535)) for v in scaled]


def algorithm_identification() -> hd.AlgorithmIdentificationSequence:
    return hd.AlgorithmIdentificationSequence(
        name=ALGORITHM_NAME, version=ALGORITHM_VERSION,
        family=hd.sr.CodedConcept("113067", "DCM", "Quantitative Image Analysis"))


def tracking_uid(seg_sop_uid: str, segment_number: int) -> str:
    """Deterministic tracking UID of a segment (the SR's measurement group uses the same)."""
    return derived_uid(seg_sop_uid, f"segment-{segment_number}")


def target_mask(grid: Volume, center_lps: np.ndarray, radius_mm: float) -> np.ndarray:
    """Voxels of ``grid`` within ``radius_mm`` of a point. Only the sphere's index box (+1 voxel)
    is computed - the same arithmetic per voxel as over the whole grid, which is all False
    outside it."""
    shape = np.asarray(grid.shape)
    center_ijk = grid.world_to_voxel(np.asarray(center_lps, float))
    reach = radius_mm * np.linalg.norm(np.linalg.inv(grid.affine[:3, :3]), axis=1)
    lo = np.clip(np.floor(center_ijk - reach).astype(int) - 1, 0, shape)
    hi = np.clip(np.ceil(center_ijk + reach).astype(int) + 2, 0, shape)
    out = np.zeros(grid.shape, dtype=bool)
    if np.any(hi <= lo):
        return out
    ii, jj, kk = np.meshgrid(*[np.arange(a, b) for a, b in zip(lo, hi, strict=True)], indexing="ij")
    ijk = np.stack([ii, jj, kk], -1).reshape(-1, 3)
    lps = grid.voxel_to_world(ijk)
    out[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = \
        (np.linalg.norm(lps - center_lps, axis=1) <= radius_mm).reshape(hi - lo)
    return out


def segment_specs(a: Assessment, tumour_radius_mm: float, margin_mm: float) -> list[SegmentSpec]:
    seg, roi = a.segmentation, a.roi
    assert seg is not None and roi is not None and a.tumour_center_followup is not None
    specs = [
        SegmentSpec(1, "Ablation zone", codes.MORPHOLOGICALLY_ALTERED, codes.ABLATION_ZONE, seg.zone.mask),
        SegmentSpec(2, "Enhancing rim", codes.MORPHOLOGICALLY_ALTERED, codes.ENHANCING_RIM, seg.rim.mask),
        SegmentSpec(3, "Tumour + margin (mapped)", codes.SPATIAL_CONCEPT, codes.ABLATION_TARGET,
                    target_mask(roi.grid, a.tumour_center_followup, tumour_radius_mm + margin_mm)),
    ]
    for n, f in enumerate([f for f in seg.foci if f.suspicious], start=1):
        specs.append(SegmentSpec(3 + n, f"Suspicious focus {n}", codes.MORPHOLOGICALLY_ALTERED,
                                 codes.SUSPICIOUS_FOCUS, f.mask))
    first = len(specs) + 1  # then each suspicious non-mass enhancement, as the report lists them
    for k, m in enumerate([m for m in seg.nme if m.suspicious]):
        specs.append(SegmentSpec(first + k, f"Non-mass enhancement {k + 1}", codes.MORPHOLOGICALLY_ALTERED,
                                 codes.NON_MASS_ENHANCEMENT, m.mask))
    return specs


def roi_offset(full: Volume, roi: Volume) -> np.ndarray:
    """Integer voxel offset of the ROI grid inside the full pre-contrast grid."""
    off = np.linalg.inv(full.affine) @ roi.affine[:, 3]
    rounded = np.round(off[:3]).astype(int)
    if not np.allclose(off[:3], rounded, atol=1e-3):
        raise ValueError("the analysis box is not aligned with the source voxel grid")
    return rounded


def build_seg(a: Assessment, pre_contrast: Volume, source_by_k: list[Dataset], *,
              tumour_radius_mm: float, margin_mm: float, series_uid: str, sop_uid: str,
              series_number: int = 9001) -> hd.seg.Segmentation:
    """``source_by_k``: the pre-contrast phase's single-frame source datasets in slice (k) order."""
    roi = a.roi
    assert roi is not None
    specs = segment_specs(a, tumour_radius_mm, margin_mm)
    i0, j0, k0 = roi_offset(pre_contrast, roi.grid)
    ni, nj, nk = roi.grid.shape
    rows, cols = pre_contrast.shape[1], pre_contrast.shape[0]
    pixels = np.zeros((nk, rows, cols, len(specs)), dtype=bool)
    for s, spec in enumerate(specs):
        # ROI mask [i, j, k] -> frames [k, row=j, column=i] of the full image
        pixels[:, j0:j0 + nj, i0:i0 + ni, s] = np.transpose(spec.mask, (2, 1, 0))
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=spec.number, segment_label=spec.label,
            segmented_property_category=spec.category, segmented_property_type=spec.type,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm_identification(),
            tracking_uid=tracking_uid(sop_uid, spec.number), tracking_id=spec.label,
            anatomic_regions=[codes.BREAST],
        ) for spec in specs
    ]
    for d, spec in zip(descriptions, specs, strict=True):
        d.RecommendedDisplayCIELabValue = cielab_colour(spec.number)
    seg = hd.seg.Segmentation(
        source_images=source_by_k[k0:k0 + nk],
        pixel_array=pixels,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=series_uid, series_number=series_number,
        sop_instance_uid=sop_uid, instance_number=1,
        manufacturer=MANUFACTURER, manufacturer_model_name=ALGORITHM_NAME,
        software_versions=ALGORITHM_VERSION, device_serial_number="0",
        series_description="followup: ablation zone, rim, foci",
    )
    seg.CodingSchemeIdentificationSequence = [codes.coding_scheme_identification()]
    stamp_product(seg)
    return seg
