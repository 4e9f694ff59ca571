"""The listener's memory of recent studies: each study's Patient ID and instance count, so that
the study checks of an arriving instance need no registry query."""

from __future__ import annotations

import threading
from collections import OrderedDict

STUDY_CACHE_SIZE = 4096  # studies whose Patient ID and count the listener keeps in memory


class KnownStudies:
    """Study UID -> [Patient ID, instances], the most recent ``size`` studies: what the study
    checks need without a registry query per instance. A study's Patient ID never changes; the
    count only grows (other writers, e.g. a C-GET of a baseline, make it a lower bound; the bound
    stays a bound)."""

    def __init__(self, size: int = STUDY_CACHE_SIZE) -> None:
        self.size = size
        self._lock = threading.Lock()
        self._studies: OrderedDict[str, list] = OrderedDict()

    def get(self, study_uid: str) -> tuple[str, int] | None:
        with self._lock:
            known = self._studies.get(study_uid)
            if known is None:
                return None
            self._studies.move_to_end(study_uid)
            return known[0], known[1]

    def remember(self, study_uid: str, patient_id: str, n_instances: int | None = None) -> None:
        """Cache a study's Patient ID and count (``None``: one more instance than cached)."""
        with self._lock:
            known = self._studies.get(study_uid)
            if n_instances is None:
                n_instances = 1 if known is None else known[1] + 1
            self._studies[study_uid] = [patient_id, n_instances]
            self._studies.move_to_end(study_uid)
            while len(self._studies) > self.size:
                self._studies.popitem(last=False)
