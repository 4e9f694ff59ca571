"""The earlier report a new revision of a study's analysis replaces.

A study analysed again (a series that arrived after its report was made, a reanalysis) gets a new
revision with new DICOM UIDs (:mod:`followup.reporting.uids`); the earlier objects at the PACS are
superseded, never silently duplicated: the new SR names the earlier SR in its Predecessor Documents
Sequence, and the readable reports say which revision they replace and which series were added.

:func:`read_predecessor` reads what is needed of the earlier report (its ``report.json``: revision,
algorithm version, creation time, DICOM objects, the follow-up series it had); :func:`supersedes`
makes the report's ``supersedes`` field of it, before anything is rendered.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from followup.dicom.study import DCEStudy
from followup.reporting.model import DicomOutput, Supersedes


@dataclass(frozen=True)
class Predecessor:
    """What a new report needs of the earlier one it supersedes."""

    revision: int
    algorithm_version: str
    created: str | None
    outputs: dict[str, DicomOutput]
    series_instance_uids: tuple[str, ...]  # every follow-up series it saw (DCE and ignored ones)


def _series(summary: dict | None) -> tuple[str, ...]:
    if not summary:
        return ()
    ignored = [i.get("series_instance_uid", "") for i in summary.get("ignored_series") or ()]
    return tuple(dict.fromkeys([*(summary.get("series_instance_uids") or ()), *ignored]))


def read_predecessor(report_json: Path) -> Predecessor | None:
    """The earlier report from its ``report.json``; None when there is none, it cannot be read, or
    it made no SR (nothing at the PACS to supersede). Read leniently (only the keys named here),
    so that a report written by an older version still qualifies."""
    try:
        data = json.loads(Path(report_json).read_text(encoding="utf-8"))
        outputs = {name: DicomOutput.model_validate(o) for name, o in (data.get("outputs") or {}).items()}
        if "sr" not in outputs:
            return None
        return Predecessor(revision=int(data["revision"]), algorithm_version=str(data["algorithm"]["version"]),
                           created=data.get("created"), outputs=outputs,
                           series_instance_uids=_series((data.get("studies") or {}).get("followup")))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def followup_series(followup: DCEStudy) -> tuple[str, ...]:
    """Every series of the follow-up the analysis saw: its DCE series, then the ignored ones."""
    return tuple(dict.fromkeys([*followup.series_uids, *(i.series_uid for i in followup.ignored_series)]))


def supersedes(predecessor: Predecessor | None, followup: DCEStudy) -> Supersedes | None:
    """The report's ``supersedes``: the earlier report, and the series this one adds to it."""
    if predecessor is None:
        return None
    before = set(predecessor.series_instance_uids)
    return Supersedes(revision=predecessor.revision, algorithm_version=predecessor.algorithm_version,
                      created=predecessor.created, outputs=predecessor.outputs,
                      series_added=tuple(u for u in followup_series(followup) if u not in before))


__all__ = ["Predecessor", "followup_series", "read_predecessor", "supersedes"]
