"""The technique line of a report, read from the follow-up's DCE headers: field strength, plane,
2D/3D, weighting, sequence, fat suppression, phases and their interval, contrast agent and its
timing, slice thickness and in-plane pixel size.

Every part comes from what the headers say (:class:`~followup.dicom.header_records.AcquisitionHeader`,
the frames' geometry, the phases' times and contrast flags) and is left out when they do not say it:
nothing is guessed. Two readings are ours, said here: the phases before the first post-contrast one
count as pre-contrast (without contrast attributes, the first phase, as the whole analysis reads it,
:class:`~followup.dicom.study.DCEStudy`), and "T1-weighted" is said only when a RepetitionTime of at
most ``T1_MAX_TR_MS`` is recorded (the DCE search's own test, :mod:`followup.dicom.dce_series`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from followup.dicom.dce_series import T1_MAX_TR_MS
from followup.dicom.header_records import InstanceHeader
from followup.dicom.stack import normal_of
from followup.dicom.study import DCEStudy

# the agent name header_fields gives an Enhanced MR object's contrast sequence: not a name
_NOT_A_NAME = {"enhanced contrast/bolus"}
# a slice normal at more than ~20 degrees from every patient axis makes the plane "oblique"
OBLIQUE_COS = 0.94
# a first post-contrast phase later than this after the bolus start is not believed (a wrong clock)
MAX_CONTRAST_DELAY_S = 1800.0
T = TypeVar("T")
_PLANES = ("sagittal", "coronal", "axial")  # normal along x (L-R), y (A-P), z (S-I)
_GRE_NAME = re.compile(r"fl[23]d|tfl|fgre|spgr|ffe|vibe|vibrant|thrive|lava|\bgre", re.I)
_FS_WORDS = re.compile(r"(?<![a-z])(fs|fatsat|fat[ _-]?sat\w*|fat[ _-]?supp\w*|spair|spir|dixon|"
                       r"water[ _-]?only)(?![a-z])", re.I)
_NO_FS = re.compile(r"(?<![a-z])(no|non|w/?o)[ _-]?(fs|fat[ _-]?sat\w*)(?![a-z])", re.I)
_FS_METHOD = {"dixon": "Dixon", "spair": "SPAIR", "spir": "SPIR"}


@dataclass(frozen=True)
class Technique:
    """How the follow-up's dynamic was acquired; None (or empty) where the headers do not say."""

    field_strength_t: float | None = None
    plane: str | None = None  # axial | sagittal | coronal, "oblique ..." when tilted
    dimension: str | None = None  # 2D | 3D
    weighting: str | None = None  # "T1-weighted"
    sequence: str | None = None  # e.g. "spoiled gradient echo"
    fat_suppression: bool | None = None
    fat_suppression_method: str | None = None  # Dixon | SPAIR | SPIR when named
    phases_pre: int = 0
    phases_post: int = 0
    temporal_resolution_s: float | None = None  # median interval between consecutive phases
    contrast_agent: str | None = None
    contrast_delay_s: float | None = None  # first post-contrast phase after the bolus start
    slice_thickness_mm: float | None = None
    pixel_spacing_mm: tuple[float, float] | None = None  # row spacing, column spacing

    def sentence(self) -> str:
        """One readable line, e.g. "3.0 T, axial 3D T1-weighted spoiled gradient echo with fat
        suppression, 1 pre- and 5 post-contrast phases every 60 s, Gadobutrol; slices 1.5 mm,
        in-plane 0.8 x 0.8 mm": every part only when known; "" when nothing is."""
        parts = []
        if self.field_strength_t is not None:
            parts.append(f"{self.field_strength_t:.1f} T")
        kind = [w for w in (self.plane, self.dimension, self.weighting) if w]
        words = " ".join([*kind, self.sequence or "acquisition"]) if kind or self.sequence else ""
        if self.fat_suppression is not None:
            fs = "with fat suppression" if self.fat_suppression else "without fat suppression"
            if self.fat_suppression_method:
                fs += f" ({self.fat_suppression_method})"
            words = f"{words} {fs}".strip()
        if words:
            parts.append(words)
        if self.phases_pre or self.phases_post:
            noun = "phase" if self.phases_post == 1 else "phases"
            phases = f"{self.phases_pre} pre- and {self.phases_post} post-contrast {noun}"
            if self.temporal_resolution_s is not None:
                phases += f" every {self.temporal_resolution_s:.0f} s"
            parts.append(phases)
        if self.contrast_agent:
            agent = self.contrast_agent
            if self.contrast_delay_s is not None:
                agent += f" (first post-contrast phase {self.contrast_delay_s:.0f} s after injection)"
            parts.append(agent)
        elif self.contrast_delay_s is not None:
            parts.append(f"first post-contrast phase {self.contrast_delay_s:.0f} s after injection")
        line = ", ".join(parts)
        size = []
        if self.slice_thickness_mm is not None:
            size.append(f"slices {_mm(self.slice_thickness_mm)} mm")
        if self.pixel_spacing_mm is not None:
            size.append(f"in-plane {_mm(self.pixel_spacing_mm[0])} x {_mm(self.pixel_spacing_mm[1])} mm")
        if size:
            line = f"{line}; {', '.join(size)}" if line else ", ".join(size)
        return line


def _mm(v: float) -> str:
    return f"{round(v, 2):g}"


def _first(values: Iterable[T | None]) -> T | None:
    """The first value that is said (not None, not empty)."""
    return next((v for v in values if v is not None and v != "" and v != ()), None)


def plane_of(iop: Sequence[float]) -> str:
    """The acquisition plane of an ImageOrientationPatient: the patient axis nearest its normal."""
    n = np.abs(normal_of(np.asarray(iop, dtype=float)))
    name = _PLANES[int(np.argmax(n))]
    return name if n.max() >= OBLIQUE_COS else f"oblique {name}"


def sequence_of(headers: Sequence[InstanceHeader]) -> str | None:
    """The pulse sequence in words from ScanningSequence/SequenceVariant (Enhanced MR:
    EchoPulseSequence; else a gradient-echo SequenceName), None when none says."""
    acq = [h.acquisition for h in headers]
    seq = set(_first(a.scanning_sequence for a in acq) or ())
    variant = set(_first(a.sequence_variant for a in acq) or ())
    echo = _first([a.echo_pulse_sequence for a in acq])
    if "EP" in seq:
        base = "echo planar"
    elif "GR" in seq or echo == "GRADIENT":
        base = "spoiled gradient echo" if "SP" in variant else "gradient echo"
    elif "SE" in seq or echo == "SPIN":
        base = "spin echo"
    elif echo == "BOTH":
        base = "hybrid spin and gradient echo"
    elif not seq and _GRE_NAME.search(str(_first([a.sequence_name for a in acq]) or "")):
        base = "gradient echo"
    elif "IR" in seq:
        return "inversion recovery"
    else:
        return None
    if "IR" in seq:
        base = f"inversion-recovery {base}"
    if "MP" in variant:
        base = f"magnetization-prepared {base}"
    return base


def fat_suppression_of(headers: Sequence[InstanceHeader], descriptions: Sequence[str]
                       ) -> tuple[bool | None, str | None]:
    """(said, method): ScanOptions FS/FAT..., an Enhanced MR SpectrallySelectedSuppression, or the
    series description (FS, fatsat, SPAIR, SPIR, Dixon, "no FS"); (None, None) when unsaid."""
    text = " ".join(descriptions)
    method = next((_FS_METHOD[w.lower()] for w in re.findall(r"[A-Za-z]+", text)
                   if w.lower() in _FS_METHOD), None)
    if _NO_FS.search(text):
        return False, None
    options = {o for h in headers for o in h.acquisition.scan_options}
    if "FS" in options or any(o.startswith("FAT") for o in options) or _FS_WORDS.search(text):
        return True, method
    suppression = _first([h.acquisition.spectrally_selected_suppression for h in headers])
    if suppression in ("FAT", "FAT_AND_WATER"):
        return True, method
    if suppression == "NONE":
        return False, None
    return None, None


def _median_interval(times_s: Sequence[float]) -> float | None:
    t = np.asarray([x for x in times_s if x is not None and np.isfinite(x)], dtype=float)
    if len(t) < 2:
        return None
    return float(np.median(np.diff(np.sort(t))))


def _phase_counts(contrast: Sequence[bool | None]) -> tuple[int, int]:
    """(pre, post): the phases before the first post-contrast one are pre-contrast; without
    contrast attributes the first phase is (the analysis' reading)."""
    n = len(contrast)
    if n == 0:
        return 0, 0
    first_post = next((i for i, c in enumerate(contrast) if c), None)
    if first_post is None or first_post == 0 or any(c is None for c in contrast):
        first_post = 1
    return first_post, n - first_post


def technique_of(headers: Sequence[InstanceHeader], phase_times_s: Sequence[float] = (),
                 contrast: Sequence[bool | None] = (), descriptions: Sequence[str] = (),
                 first_post_seconds_of_day: float | None = None) -> Technique:
    """The technique from DCE header records, the phases' times (s from the first) and contrast
    flags, and the acquisition time (seconds of the day) of the first post-contrast phase."""
    frames = [f for h in headers for f in h.frames]
    iop = _first([f.iop for f in frames])
    spacing = _first([f.pixel_spacing for f in frames])
    tr = _first([h.repetition_time for h in headers])
    dims = _first([h.acquisition.mr_acquisition_type for h in headers])
    name = _first([h.acquisition.sequence_name for h in headers])
    if dims is None and name is not None and re.search(r"3d", name, re.I):
        dims = "3D"
    fs, method = fat_suppression_of(headers, [*descriptions, *sorted({h.series_description for h in headers})])
    agent = _first([h.contrast_agent for h in headers if h.contrast_agent not in _NOT_A_NAME])
    start = _first([h.contrast_start_time for h in headers])
    delay = None
    if start is not None and first_post_seconds_of_day is not None:
        d = (first_post_seconds_of_day - float(start)) % 86400.0
        delay = d if d <= MAX_CONTRAST_DELAY_S else None
    pre, post = _phase_counts(contrast)
    return Technique(
        field_strength_t=_first([h.acquisition.field_strength_t for h in headers]),
        plane=plane_of(iop) if iop is not None else None,
        dimension=str(dims) if dims in ("2D", "3D") else None,
        weighting="T1-weighted" if tr is not None and float(tr) <= T1_MAX_TR_MS else None,
        sequence=sequence_of(headers), fat_suppression=fs, fat_suppression_method=method,
        phases_pre=pre, phases_post=post, temporal_resolution_s=_median_interval(phase_times_s),
        contrast_agent=str(agent) if agent else None, contrast_delay_s=delay,
        slice_thickness_mm=_first([h.acquisition.slice_thickness_mm for h in headers]),
        pixel_spacing_mm=(float(spacing[0]), float(spacing[1])) if spacing is not None else None,
    )


def _first_post_time(study: DCEStudy) -> float | None:
    """Seconds of the day at which the first post-contrast phase began (its earliest frame)."""
    contrast = [p.contrast for p in study.phases]
    pre, post = _phase_counts(contrast)
    if not post or not study.instances:
        return None
    phase = study.phases[pre]
    by_sop = {h.sop_uid: h for h in study.instances}
    times = []
    for sop, number in zip(phase.sop_instance_uids, phase.frame_numbers or [1] * len(phase.sop_instance_uids),
                           strict=False):
        h = by_sop.get(sop)
        t = h.frames[number - 1].acq_time if h is not None and 0 < number <= len(h.frames) else None
        if t is not None:
            times.append(float(t))
    return min(times) if times else None


def technique(study: DCEStudy) -> Technique:
    """The technique of a loaded DCE study (its dynamic's header records and phases)."""
    return technique_of(study.instances, [p.time_s for p in study.phases], [p.contrast for p in study.phases],
                        [study.series_description], _first_post_time(study))


__all__ = ["Technique", "fat_suppression_of", "plane_of", "sequence_of", "technique", "technique_of"]
