"""The PACS as configured, whichever way it is reached: a DIMSE node (``AET@HOST:PORT``:
C-STORE, C-FIND, C-GET in ``followup.service.pacs``) or a DICOMweb service (a base URL: STOW-RS,
QIDO-RS, WADO-RS in ``followup.service.dicomweb``). Delivery and retrieval call these and do not
care which; each does one attempt and raises ``PacsError`` on failure.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

from pydicom.dataset import Dataset

from followup.config import Settings
from followup.remote_nodes import DicomWebEndpoint, RemoteNode
from followup.service import pacs
from followup.service.pacs import StudyMatch
from followup.service.store import Store

DICOMWEB_ORIGIN = "DICOMWEB"  # what a registry row's calling AE says of an instance fetched by WADO-RS


def origin(node: RemoteNode) -> str:
    """What the registry records as the calling AE of an instance fetched from ``node``."""
    return DICOMWEB_ORIGIN if isinstance(node, DicomWebEndpoint) else node.ae_title


def send_files(settings: Settings, node: RemoteNode, paths: list[Path]) -> None:
    """Send every file to ``node`` in one association (C-STORE) or one request (STOW-RS)."""
    if isinstance(node, DicomWebEndpoint):
        from followup.service import dicomweb

        dicomweb.store_files(settings, node, paths)
        return
    pacs.send_files(paths, node, settings.ae_title, ssl_context=pacs.scu_context(settings, node))


def find_studies(settings: Settings, source: RemoteNode, patient_id: str, before: dt.date,
                 after: dt.date | None = None) -> list[StudyMatch]:
    """The patient's MR studies dated before ``before`` (on or after ``after``): C-FIND or QIDO-RS."""
    if isinstance(source, DicomWebEndpoint):
        from followup.service import dicomweb

        return dicomweb.find_studies(settings, source, patient_id, before, after=after)
    return pacs.find_studies(source, settings.ae_title, patient_id, before,
                             ssl_context=pacs.scu_context(settings, source), after=after)


def get_study(settings: Settings, source: RemoteNode, study_uid: str, store: Store,
              on_instance: Callable[[Path, Dataset], None]) -> int:
    """Fetch a study's MR images into the store (C-GET or WADO-RS); how many were stored."""
    if isinstance(source, DicomWebEndpoint):
        from followup.service import dicomweb

        return dicomweb.get_study(settings, source, study_uid, store, on_instance)
    return pacs.get_study(source, settings.ae_title, study_uid, store, on_instance,
                          ssl_context=pacs.scu_context(settings, source))


__all__ = ["DICOMWEB_ORIGIN", "find_studies", "get_study", "origin", "send_files"]
