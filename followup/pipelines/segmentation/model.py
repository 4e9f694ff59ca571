"""The segmentation's results: the ablation zone, its rim, the enhancing foci, the non-mass
enhancement at the site, and all of them together."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np

from followup.pipelines.segmentation.lexicon import Lexicon


@dataclass(frozen=True)
class Zone:
    mask: np.ndarray  # bool, ROI grid
    centre_lps: np.ndarray
    volume_ml: float
    axes_mm: np.ndarray  # diameters along the principal axes, largest first
    axis_directions: np.ndarray  # rows: unit vectors (LPS)
    ray_radius_mm: np.ndarray  # zone radius along each ray from ``ray_origin_lps``
    smallest_margin_mm: float  # distance from the tumour centre to the zone edge minus its radius
    covers_margin: bool
    leaked: bool  # rays that ran to the search limit: the zone's edge was not found there
    ray_origin_lps: np.ndarray | None = None  # where the rays start (None: the tumour centre)
    # share of directions whose edge is the earlier exam's zone carried forward, no rim or signal
    # change seen up to it or beyond (there the volume is an upper bound)
    edge_from_prior_share: float = 0.0


@dataclass(frozen=True)
class Rim:
    mask: np.ndarray
    thickness_mm: float  # median over rays
    thickness_p90_mm: float
    initial_pe: float
    delayed_change_pct: float
    curve_type: str
    initial_phase: str
    uniform: bool


@dataclass(frozen=True)
class Focus:
    label: int
    mask: np.ndarray
    centre_lps: np.ndarray
    volume_mm3: float
    largest_diameter_mm: float
    thickness_mm: float
    peak_pe: float
    initial_pe: float
    ser: float
    delayed_change_pct: float
    curve_type: str
    initial_phase: str
    distance_to_zone_edge_mm: float
    suspicious: bool
    reasons: list[str] = field(default_factory=list)
    kinetics_reliable: bool = True  # False: the curve dips and recovers (phases misaligned)
    lexicon: Lexicon | None = None  # ACR BI-RADS MRI descriptors (segmentation.lexicon)
    # enhancing at the same place on the pre-procedure MRI (segmentation.before): background, not new
    present_before: bool = False
    # a ring around a centre with fat's signal, fat not suppressed (segmentation.fat_centre): fat necrosis
    fat_centre: bool = False


class NmeDistribution(StrEnum):
    """ACR BI-RADS MRI (2013) non-mass distribution (``multiple regions`` and ``diffuse`` are not
    told at one ablation site)."""

    FOCAL = "focal"
    LINEAR = "linear"
    SEGMENTAL = "segmental"
    REGIONAL = "regional"


class NmeInternal(StrEnum):
    """ACR BI-RADS MRI (2013) non-mass internal enhancement pattern."""

    HOMOGENEOUS = "homogeneous"
    HETEROGENEOUS = "heterogeneous"
    CLUMPED = "clumped"
    CLUSTERED_RING = "clustered-ring"


class NmeMimic(StrEnum):
    """The benign look-alike a non-mass enhancement was recognised as (never suspicious)."""

    PROBE_TRACK = "probe-track"  # thin straight homogeneous line (biopsy or cryoprobe track)
    THICK_RIM = "thick-rim"  # a thickened stretch of the rim, hugging the zone's surface
    BACKGROUND = "background-enhancement"  # patchy BPE: similar patches away from the site


@dataclass(frozen=True)
class NonMassEnhancement:
    """Enhancement at or extending from the ablation site that is not a mass (ACR BI-RADS: non-mass
    enhancement), described with the lexicon; positions in LPS mm on the ROI's grid."""

    label: int
    mask: np.ndarray = field(repr=False)  # bool, ROI grid
    distribution: NmeDistribution
    internal: NmeInternal
    extent_mm: float  # its longest extent (along its long axis)
    width_mm: float  # its extent across the long axis (second principal axis)
    start_lps: np.ndarray  # the end of its long axis nearer the zone
    end_lps: np.ndarray  # the far end
    centre_lps: np.ndarray
    volume_mm3: float
    distance_to_zone_edge_mm: float  # its nearest voxel (<= 0: touches or inside the zone)
    initial_pe: float  # percent enhancement at the first post-contrast phase (most enhancing half)
    initial_phase: str  # slow | medium | fast
    delayed_change_pct: float
    curve_type: str  # persistent | plateau | washout | none
    kinetics_reliable: bool  # False: the curve dips and recovers (phases misaligned)
    mimic: NmeMimic | None  # the benign look-alike it was recognised as; None: none
    suspicious: bool
    reasons: tuple[str, ...] = ()
    focus_labels: tuple[int, ...] = ()  # foci sharing its voxels: one finding, counted once
    # focal or regional, enhancing at the same place on the pre-procedure MRI (segmentation.before)
    present_before: bool = False


@dataclass(frozen=True)
class Segmentation:
    zone: Zone
    rim: Rim
    foci: list[Focus]
    nme: tuple[NonMassEnhancement, ...] = ()
