"""Deterministic UIDs for the objects the product creates.

The same follow-up study analysed by the same algorithm version always yields the same series
and SOP instance UIDs, so a re-run (a redelivered task) re-creates identical objects instead of
new ones; a new algorithm version makes new UIDs (a new version of the report, never an overwrite).
"""

from __future__ import annotations

import uuid

from followup.pipelines.assess import ALGORITHM_NAME, ALGORITHM_VERSION

_NAMESPACE = uuid.UUID("0b6f2a7e-3c1d-5e8f-9a2b-4c6d8e0f1a3b")


def derived_uid(study_uid: str, *parts: str, version: str = ALGORITHM_VERSION) -> str:
    """``2.25.<UUID>``: a name-based (SHA-1) UUID of the study, algorithm version and parts."""
    name = "|".join([ALGORITHM_NAME, version, study_uid, *parts])
    return f"2.25.{uuid.uuid5(_NAMESPACE, name).int}"


def output_uids(study_uid: str, name: str, revision: int) -> tuple[str, str]:
    """(Series Instance UID, SOP Instance UID) of output ``name`` ("seg", "sr", "pdf") for a
    revision of the analysis of a study: known before the object is rendered."""
    return (derived_uid(study_uid, f"{name}-series", f"r{revision}"),
            derived_uid(study_uid, name, f"r{revision}"))
