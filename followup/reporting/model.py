"""``report.json`` as a typed model: the one finished result that every renderer reads.

:class:`Report` *is* ``report.json`` (``report.model_dump_json()``), built once per analysis by
:func:`followup.reporting.build.build_report` after :func:`followup.reporting.plan.plan_outputs`
has decided which DICOM objects are made and every warning. Then JSON, HTML, PDF, SR, SEG,
Encapsulated PDF and FHIR are rendered from that same object; none of them can change it.

* Frozen (attribute assignment raises) and sequences are tuples, so a renderer cannot add a
  warning after another one was rendered; ``extra="forbid"``: a misspelt key is an error.
* Plain JSON types by construction: a "before" validator on every model turns numpy scalars and
  arrays (``np.bool_``, ``np.float32``, ``np.int64``, ``ndarray``) into Python ``bool``, ``float``,
  ``int`` and lists, so ``model_dump_json`` never meets a type ``json`` cannot write. Values the
  report gives as ``null`` when they are not finite (a focus's SER, a phase time) are
  :data:`FiniteOrNone`.
* One spelling: ``center`` (as DICOM and the procedure record write it), positions in the
  patient's LPS coordinates in mm (``*_lps_mm``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, model_validator

from followup.procedure import ProcedureRecord
from followup.reporting.model_base import FiniteOrNone, Point, plain
from followup.reporting.model_reading import BreastRow, LexiconRow, LocationRow, NmeRow


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _plain_types(cls, data: Any) -> Any:
        return plain(data) if isinstance(data, dict) else data

# --- registration -------------------------------------------------------------------------------

class Similarity(_Model):
    mutual_information: float
    local_ncc: float


class Registration(_Model):
    method: str
    similarity_before: Similarity
    similarity_after: Similarity
    quality: str  # good | poor
    quality_reasons: tuple[str, ...]
    # the numbers the quality rule read (RegistrationResult.figures; null when not finite)
    quality_figures: dict[str, FiniteOrNone] = {}
    followup_to_baseline_affine: tuple[tuple[float, ...], ...]
    tumour_center_followup_lps_mm: Point | None
    tumour_center_baseline_lps_mm: Point


# --- findings -----------------------------------------------------------------------------------

class AblationZone(_Model):
    center_lps_mm: Point
    volume_ml: float
    axes_mm: tuple[float, ...]
    axis_directions_lps: tuple[tuple[float, ...], ...]
    margin_mm: float
    covers_tumour_plus_margin: bool
    smallest_margin_mm: float
    edge_found_everywhere: bool
    # found in the follow-up itself (non-enhancing ovoid near the mapped site); False: outlined
    # around the mapped tumour instead (see the caveats)
    found_in_followup: bool
    location: LocationRow | None = None  # of its centre (null: nipple not found)


class Rim(_Model):
    thickness_mm: float
    thickness_p90_mm: float
    uniform: bool
    initial_enhancement_pct: float
    initial_phase: str
    delayed_change_pct: float
    curve_type: str
    benign_pattern: bool


class FocusRow(_Model):
    center_lps_mm: Point
    volume_mm3: float
    largest_diameter_mm: float
    thickness_mm: float
    peak_enhancement_pct: float
    initial_enhancement_pct: float
    initial_phase: str
    ser: FiniteOrNone
    ser_band: str
    delayed_change_pct: float
    curve_type: str
    distance_to_zone_edge_mm: float
    at_ablation_site: bool
    suspicious: bool
    why: tuple[str, ...]
    lexicon: LexiconRow | None = None  # ACR BI-RADS MRI descriptors
    location: LocationRow | None = None  # clock face, distance from the nipple (null: nipple not found)
    # enhancing at the same place on the pre-procedure MRI, outside the treated volume: background
    present_before: bool = False
    # a ring around a centre with fat's signal (fat not suppressed): fat necrosis, benign
    fat_center: bool = False


class MotionStep(_Model):
    phase: int
    shift_mm: float
    realigned: bool


class Findings(_Model):
    ablation_zone: AblationZone
    rim: Rim
    suspicious_foci: tuple[FocusRow, ...]
    other_enhancement: tuple[FocusRow, ...]
    motion_correction: tuple[MotionStep, ...]
    # non-mass enhancement at or extending from the site (suspicious first, then look-alikes)
    non_mass_enhancement: tuple[NmeRow, ...] = ()


# --- the number, and what to do -------------------------------------------------------------------

class Driver(_Model):
    name: str
    odds_factor: float
    probability_before: float
    probability_after: float
    source: str
    assumption: bool


class Note(_Model):
    """A caveat or a recommendation: a stable code and its sentence."""

    code: str
    text: str


class Birads(_Model):
    """The ACR BI-RADS MRI assessment category (5th ed.) of this examination, with its management
    (:mod:`followup.pipelines.birads`)."""

    category: Literal["0", "2", "3", "4A", "4B", "4C", "5"]
    label: str
    management: str
    criteria: str  # the rule that gave the category
    tissue_diagnosis: bool


# --- who and what ---------------------------------------------------------------------------------

class Patient(_Model):
    """Identity from the follow-up study's own headers (never invented)."""

    id: str
    name: str
    birth_date: str
    sex: str


class IgnoredSeries(_Model):
    series_instance_uid: str
    description: str | None
    reason: str


class StudySummary(_Model):
    study_instance_uid: str
    study_date: str | None  # ISO
    accession_number: str | None
    series_instance_uids: tuple[str, ...]
    series_description: str | None
    phases: int
    phase_times_s: tuple[FiniteOrNone, ...]
    phase_ordering: str | None
    ignored_series: tuple[IgnoredSeries, ...]
    rejected_files: int


class Studies(_Model):
    followup: StudySummary | None
    baseline: StudySummary | None


class Algorithm(_Model):
    name: str
    version: str


class DicomOutput(_Model):
    """A DICOM object that goes back to PACS: its file in the report folder and its UIDs
    (decided before anything is rendered: :mod:`followup.reporting.uids`)."""

    file: str
    series_instance_uid: str
    sop_instance_uid: str
    sop_class_uid: str


class Supersedes(_Model):
    """The earlier report of the same study that this one replaces (a series received after it was
    made, or a reanalysis): decided before rendering, from that report's own ``report.json``. Its
    SR is this SR's Predecessor Documents Sequence; the readable reports say so."""

    revision: int
    algorithm_version: str
    created: str | None  # when the earlier report was made (ISO, UTC)
    outputs: dict[str, DicomOutput]  # the earlier report's DICOM objects (sent to PACS)
    series_added: tuple[str, ...]  # follow-up series this report has and the earlier one had not


# --- longitudinal surveillance (issue 14: the earlier follow-ups compared) -----------------------

class SurveillanceFocus(_Model):
    """A suspicious focus at the ablation site of one time point; its centre in the *current*
    follow-up's LPS space (null when the time point could not be registered to it)."""

    center_lps_mm: Point | None
    largest_diameter_mm: float
    curve_type: str
    distance_to_zone_edge_mm: float
    peak_enhancement_pct: float


class FocusChange(_Model):
    center_lps_mm: Point | None  # current follow-up's LPS
    largest_diameter_mm: float
    previous_diameter_mm: float | None  # null: new
    change_mm: float | None
    curve_type: str


class ChangeVsPrevious(_Model):
    """A time point against the previous measured follow-up."""

    previous_study_instance_uid: str
    previous_study_date: str | None
    volume_ratio: float | None
    rim_thickness_change_mm: float | None
    new_foci: tuple[FocusChange, ...]
    grown_foci: tuple[FocusChange, ...]
    foci_compared: bool  # false: no earlier follow-up could be put in one space with it (no focus called new)
    # the follow-up the foci were compared with: the previous one, or where that one could not be
    # registered the latest earlier one that could (null: not compared)
    foci_compared_with_study_instance_uid: str | None = None
    foci_compared_with_study_date: str | None = None


class TimePointRegistration(_Model):
    """How a time point's findings reach the current follow-up: ``self`` (the current one),
    ``direct`` (registered to it), ``via-baseline`` (through both registrations to the baseline),
    ``none``."""

    mapping: Literal["self", "direct", "via-baseline", "none"]
    quality: str | None  # of the direct registration to the current follow-up
    chain_discrepancy_mm: float | None  # current -> prior -> baseline vs current -> baseline


class TimePoint(_Model):
    study_instance_uid: str
    study_date: str | None
    days_since_procedure: int | None
    months_since_procedure: float | None
    current: bool
    status: str  # complete | deferred | failed (of this time point's own analysis)
    reason: str | None
    zone_volume_ml: float | None
    zone_axes_mm: tuple[float, ...]
    rim_thickness_mm: float | None
    rim_curve_type: str | None
    rim_initial_enhancement_pct: float | None
    rim_delayed_change_pct: float | None
    suspicious_foci: tuple[SurveillanceFocus, ...]
    registration_to_current: TimePointRegistration
    change_vs_previous: ChangeVsPrevious | None


class Longitudinal(_Model):
    """Every follow-up of the patient (by date, the current one last) and the current trend."""

    time_points: tuple[TimePoint, ...]
    trend: Literal["involuting", "stable", "growing", "new-enhancement"] | None
    trend_reason: str


# --- technique and comparison (issue 24) ------------------------------------------------------

class Technique(_Model):
    """The follow-up dynamic's technique as its DICOM headers say it (:mod:`followup.dicom.technique`;
    null where they do not) and its one readable ``sentence`` ("" when they say nothing)."""

    sentence: str
    field_strength_t: float | None
    plane: str | None
    dimension: str | None
    weighting: str | None
    sequence: str | None
    fat_suppression: bool | None
    fat_suppression_method: str | None
    phases_pre: int
    phases_post: int
    temporal_resolution_s: float | None
    contrast_agent: str | None
    contrast_delay_s: float | None
    slice_thickness_mm: float | None
    pixel_spacing_mm: tuple[float, float] | None


class Comparison(_Model):
    """The comparison with the pre-procedure MRI and every earlier follow-up, by date, in one
    sentence (:mod:`followup.reporting.comparison`)."""

    sentence: str
    baseline_study_date: str | None  # ISO; null: no baseline, or its date unknown
    prior_study_dates: tuple[str | None, ...]  # the earlier follow-ups compared, by date


Status = Literal["complete", "deferred", "failed"]


class Report(_Model):
    """``report.json``. Keys, in this order: the answer (status, reason, timing, probability with
    its interval and confidence), registration, findings, drivers, caveats, recommendations,
    warnings, patient, studies, procedure (the record as given), algorithm, created, revision,
    the DICOM outputs and, for a later revision, the report it supersedes; with earlier follow-ups,
    ``longitudinal`` (issue 14); the ``technique`` line and the ``comparison`` sentence (issue 24)."""

    status: Status
    reason: str | None
    days_since_procedure: int | None
    analysable_from: str | None  # ISO date (deferred analyses)
    residual_probability: float | None
    probability_interval: tuple[float, float] | None
    interval_level: float | None
    confidence: Literal["normal", "low"] | None
    prior_probability: float | None
    # what the probability is about (one sentence, evidence.ENDPOINT) and what is not assessed
    question: Literal["residual", "recurrence"] | None = None
    endpoint: str = ""
    not_assessed: str = ""
    interval_kind: str | None = None  # "model-based": see evidence.INTERVAL_METHOD
    birads: Birads | None = None
    # the procedure lies outside the indication or the technique: the report's banner
    contraindications: tuple[Note, ...] = ()
    registration: Registration | None
    findings: Findings | None
    drivers: tuple[Driver, ...]
    caveats: tuple[Note, ...]
    recommendations: tuple[Note, ...]
    warnings: tuple[str, ...]
    patient: Patient
    studies: Studies
    procedure: ProcedureRecord
    algorithm: Algorithm
    created: str  # ISO date-time, UTC
    revision: int
    outputs: dict[str, DicomOutput]
    supersedes: Supersedes | None = None  # the earlier report of the study this one replaces
    longitudinal: Longitudinal | None = None  # earlier follow-ups compared (issue 14); null without
    technique: Technique | None = None  # the follow-up's technique line (issue 24)
    comparison: Comparison | None = None  # the comparison sentence (issue 24)
    breast: BreastRow | None = None  # nipple, composition and background enhancement (issue 24)

    def to_json_bytes(self) -> bytes:
        """``report.json``'s bytes (indented, UTF-8, a final newline)."""
        return (self.model_dump_json(indent=2) + "\n").encode("utf-8")


__all__ = [
    "AblationZone",
    "Algorithm",
    "Birads",
    "Comparison",
    "DicomOutput",
    "Driver",
    "Findings",
    "FiniteOrNone",
    "FocusRow",
    "IgnoredSeries",
    "Longitudinal",
    "MotionStep",
    "Note",
    "Patient",
    "Registration",
    "Report",
    "Rim",
    "Similarity",
    "Status",
    "Studies",
    "StudySummary",
    "Supersedes",
    "Technique",
    "plain",
]
