"""The segmentation's results: the ablation zone, its rim, the enhancing foci, and the three
together."""

from __future__ import annotations

from dataclasses import dataclass, field

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
    # share of directions whose edge is the earlier exam's zone carried forward (no rim there)
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


@dataclass(frozen=True)
class Segmentation:
    zone: Zone
    rim: Rim
    foci: list[Focus]
