"""The registry (SQLAlchemy 2): procedures, studies, instances, analyses, deliveries, batches.

SQLite file by default, PostgreSQL through ``FOLLOWUP_DB_URL``. The registry and the store are
the source of truth; Redis only carries work.

States (``followup.states``: the enums, the diagram and the tables of allowed transitions):

* Study.state: ``receiving`` -> ``stable`` (quiet period over, task enqueued) -> ``baseline`` |
  ``analysing`` -> ``complete`` | ``deferred`` | ``failed``. New MR images after ``stable`` put it
  back to ``receiving`` (the study changed); other objects never do (``objects-only`` for a study
  holding no image). ``quarantined``: the listener found two patients in the study (before issue
  22; an instance of another patient is now quarantined alone): never analysed, new images do not
  reopen it; ``release_quarantined_study`` (an administrator's ``followup quarantine release``)
  puts it back to ``receiving``.
* QuarantineEntry.state: ``held`` -> ``released`` | ``discarded`` (``close_quarantined``).
* Analysis.status: ``queued`` -> ``running`` -> ``complete`` | ``deferred`` | ``failed``.
  One row per (study, algorithm version, revision); a reanalysis is a new revision.
* Delivery.status: ``pending`` -> ``sent`` | ``failed`` (after the last retry).

The service changes a state only through the named transitions (``mark_study``,
``finish_analysis``, ``mark_delivery_sent``, ``record_delivery_failure``): each is one conditional
UPDATE whose WHERE holds the states the target may be reached from, and raises
``IllegalTransition`` when the row was in another. The atomic claims (``claim_stable_studies``,
``claim_for_sweep``, ``claim_analysis``) are conditional UPDATEs of their own. ``set_study``,
``update_analysis`` and ``update_delivery`` write columns unchecked: for other columns, and for
tests that set up a row in a given state.

The package, one module a job: ``tables`` (the models), ``core`` (engine, sessions, schema upkeep,
the conditional UPDATE of the named transitions), ``studies`` (procedures, studies, instances),
``analyses``, ``deliveries``, ``batches``, ``views`` (read-only, for the API and the listener),
``quarantine`` (and the study-patient rule) and ``patients`` (search, review marks). ``Registry``
joins them; callers import from here.
"""

from __future__ import annotations

from followup.service.registry.analyses import AnalysisRecords
from followup.service.registry.batches import BatchRecords
from followup.service.registry.core import RegistryCore, make_engine, rowcount
from followup.service.registry.deliveries import DeliveryRecords
from followup.service.registry.patients import PatientRecords
from followup.service.registry.quarantine import QuarantineRecords
from followup.service.registry.studies import PatientMismatch, StudyRecords
from followup.service.registry.tables import (
    QUARANTINE_STATES,
    Analysis,
    ApiUser,
    AuditEvent,
    Base,
    Batch,
    ChangeReview,
    Delivery,
    Instance,
    Procedure,
    QuarantineEntry,
    ServiceSetting,
    Study,
    utcnow,
)
from followup.service.registry.views import RegistryViews
from followup.states import IllegalTransition

__all__ = [
    "QUARANTINE_STATES",
    "Analysis",
    "ApiUser",
    "AuditEvent",
    "Base",
    "Batch",
    "ChangeReview",
    "Delivery",
    "IllegalTransition",
    "Instance",
    "PatientMismatch",
    "Procedure",
    "QuarantineEntry",
    "Registry",
    "RegistryCore",
    "ServiceSetting",
    "Study",
    "make_engine",
    "rowcount",
    "utcnow",
]


class Registry(StudyRecords, AnalysisRecords, DeliveryRecords, BatchRecords, RegistryViews, QuarantineRecords,
               PatientRecords):
    """The registry: every group of records on one engine (``RegistryCore``)."""
