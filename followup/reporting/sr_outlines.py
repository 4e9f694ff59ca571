"""Where the SR's findings lie on the source images: the outlines (SCOORD) that viewers draw.

Each outline lies on the first post-contrast image through the finding's centre, in image
coordinates (column, row; the top-left corner of the first pixel at 0), and uses a graphic type
that OHIF / Cornerstone3D draw with a tool of their own:

* the ablation zone and the rim: a closed POLYLINE (first point = last; Cornerstone's
  PlanarFreehandROI), where the zone's ellipsoid (its axes and directions) cuts that image's plane;
  the rim's ring is the zone's grown by the rim's thickness on each side;
* a suspicious focus: a closed POLYLINE circle of its largest diameter (PlanarFreehandROI too:
  Cornerstone's EllipticalROI and CircleROI adapters want their own NUM layout);
* the site the residual-tumour probability is about: a POINT at the tumour centre mapped into the
  follow-up (Cornerstone's Probe).

Each closed outline also gives its in-plane area (mm2): the NUM that Cornerstone's
PlanarFreehandROI adapter reads its contour from (TID 300: Area INFERRED FROM the SCOORD).

Pure geometry on the study's voxel grid; the SR templates that carry these are in
:mod:`followup.reporting.sr` and :mod:`followup.reporting.longitudinal_sr`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from followup.dicom.study import DCEStudy

RING_POINTS = 36


@dataclass(frozen=True)
class Outline:
    """One SCOORD: the image it lies on and its graphic."""

    sop_instance_uid: str
    sop_class_uid: str
    graphic_type: str  # POLYLINE (closed) | POINT
    points: np.ndarray  # (n, 2) column, row
    area_mm2: float | None = None  # of a closed POLYLINE, in the image plane
    frame_number: int | None = None  # the slice's frame in a multi-frame image; None: single-frame


def _phase(study: DCEStudy):
    return study.phases[1] if len(study.phases) > 1 else study.phases[0]


def _sop_class(study: DCEStudy, uid: str) -> str | None:
    for inst in study.instances:
        if inst.sop_uid == uid:
            return str(inst.sop_class_uid)
    return None


def _image_through(study: DCEStudy, point: np.ndarray) -> tuple[str, str, int | None] | None:
    """(SOP Instance UID, SOP Class UID, frame number in a multi-frame image or None) of the
    post-contrast image through ``point``."""
    if not study.phases:
        return None
    phase = _phase(study)
    k = int(round(float(phase.volume.world_to_voxel(np.asarray(point, dtype=float))[2])))
    if not 0 <= k < len(phase.sop_instance_uids):
        return None
    uid = phase.sop_instance_uids[k]
    cls = _sop_class(study, uid)
    multiframe = phase.sop_instance_uids.count(uid) > 1
    frame = phase.frame_numbers[k] if multiframe and len(phase.frame_numbers) > k else None
    return None if cls is None else (uid, cls, frame)


def _pixels(study: DCEStudy, pts_lps: np.ndarray) -> np.ndarray:
    inv = np.linalg.inv(_phase(study).volume.affine)
    ijk = pts_lps @ inv[:3, :3].T + inv[:3, 3]
    return ijk[:, :2] + 0.5


def _in_plane_axes(study: DCEStudy) -> tuple[np.ndarray, np.ndarray]:
    a = _phase(study).volume.affine[:3, :3]
    return a[:, 0] / np.linalg.norm(a[:, 0]), a[:, 1] / np.linalg.norm(a[:, 1])


def ellipsoid_ring(study: DCEStudy, centre: Sequence[float] | np.ndarray, axes_mm: Sequence[float] | np.ndarray,
                   directions: Sequence[Sequence[float]] | np.ndarray, grow_mm: float = 0.0) -> Outline | None:
    """Closed POLYLINE where the ellipsoid (diameters ``axes_mm`` + 2 ``grow_mm`` along
    ``directions``) cuts the image plane through ``centre``."""
    c = np.asarray(centre, dtype=float)
    at = _image_through(study, c)
    if at is None:
        return None
    e1, e2 = _in_plane_axes(study)
    dirs = np.asarray(directions, dtype=float)
    semi = np.maximum(np.asarray(axes_mm, dtype=float) / 2 + grow_mm, 0.5)
    theta = np.linspace(0, 2 * np.pi, RING_POINTS, endpoint=False)
    u = np.cos(theta)[:, None] * e1 + np.sin(theta)[:, None] * e2
    r = 1.0 / np.sqrt((((u @ dirs.T) / semi) ** 2).sum(axis=1))
    return _ring(study, at, c, u * r[:, None], e1, e2)


def _ring(study: DCEStudy, at: tuple[str, str, int | None], c: np.ndarray, offsets: np.ndarray,
          e1: np.ndarray, e2: np.ndarray) -> Outline:
    """Closed POLYLINE through ``c + offsets`` (in-plane offsets, mm) and its area (shoelace)."""
    x, y = offsets @ e1, offsets @ e2
    area = 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))
    ring = c + offsets
    ring = np.vstack([ring, ring[:1]])
    return Outline(at[0], at[1], "POLYLINE", _pixels(study, ring), area, at[2])


def circle_ring(study: DCEStudy, centre: Sequence[float], diameter_mm: float) -> Outline | None:
    """Closed POLYLINE circle of ``diameter_mm`` around ``centre`` in the image plane."""
    c = np.asarray(centre, dtype=float)
    at = _image_through(study, c)
    if at is None:
        return None
    e1, e2 = _in_plane_axes(study)
    r = max(float(diameter_mm) / 2, 1.0)
    theta = np.linspace(0, 2 * np.pi, RING_POINTS, endpoint=False)
    return _ring(study, at, c, r * (np.cos(theta)[:, None] * e1 + np.sin(theta)[:, None] * e2), e1, e2)


def point(study: DCEStudy, centre: Sequence[float]) -> Outline | None:
    c = np.asarray(centre, dtype=float)
    at = _image_through(study, c)
    if at is None:
        return None
    return Outline(at[0], at[1], "POINT", _pixels(study, c[None, :]), frame_number=at[2])




def report_outlines(report, study: DCEStudy) -> dict[str, Outline]:
    """The outlines of a finished report's findings on its follow-up (``report``: a
    :class:`~followup.reporting.model.Report`): keys ``assessment`` (the mapped tumour centre),
    ``zone``, ``rim``, ``focus-<n>``, ``nme-<k>`` (its centre); none for a deferred or failed analysis."""
    f = report.findings
    if report.status != "complete" or f is None or not study.phases:
        return {}
    z = f.ablation_zone
    out: dict[str, Outline | None] = {
        "zone": ellipsoid_ring(study, z.center_lps_mm, z.axes_mm, z.axis_directions_lps),
        "rim": ellipsoid_ring(study, z.center_lps_mm, z.axes_mm, z.axis_directions_lps,
                              grow_mm=float(f.rim.thickness_mm or 0.0)),
    }
    reg = report.registration
    if reg is not None and reg.tumour_center_followup_lps_mm:
        out["assessment"] = point(study, reg.tumour_center_followup_lps_mm)
    for n, x in enumerate(f.suspicious_foci, start=1):
        out[f"focus-{n}"] = circle_ring(study, x.center_lps_mm, x.largest_diameter_mm)
    for k, m in enumerate([m for m in f.non_mass_enhancement if m.suspicious], start=1):
        out[f"nme-{k}"] = point(study, m.center_lps_mm)
    return {k: v for k, v in out.items() if v is not None}


__all__ = ["Outline", "circle_ring", "ellipsoid_ring", "point", "report_outlines"]
