"""The way out of the quarantine (issue 22): list, show, release and discard what the listener
refused, and studies quarantined whole (by the listener before issue 22). ``followup quarantine``
and ``/admin/quarantine`` are its two faces (docs/security/listener.md).

* ``release`` an entry: the kept instance is offered to the store again with every check, the
  study's patient as the rule (``followup.service.listener.study_patient``) gives it now (e.g.
  after its patient's procedure record was added); stored (or found stored already), the entry
  is ``released`` and the study, if it received a new image, is handed over for analysis again
  after its quiet period. Refused again: the entry stays ``held`` and the reason is returned.
* ``discard`` an entry: its kept file is deleted; the entry stays, ``discarded``.
* A study (its Study Instance UID instead of an entry's number): ``release`` puts a study
  quarantined whole back to ``receiving`` and offers each of its held entries again;
  ``discard`` discards its held entries and, of a study quarantined whole, its stored
  instances. Either is recorded as an entry of kind ``study``.

Each action records who (the CLI's ``--by``, the API's authenticated identity), when and why in
the entry. An entry no longer held cannot be acted on again. The study's review flag is cleared
when it has no held entry left."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from followup.config import Settings
from followup.service.listener.handler import ReleaseFailed, StoreHandler
from followup.service.listener.validation import Refused
from followup.service.registry import QuarantineEntry, Registry
from followup.service.store import Store, valid_uid
from followup.states import StudyState

log = logging.getLogger("followup.service.quarantine")

KINDS = ("refused", "stray", "duplicate", "study")


class QuarantineError(Exception):
    """An action that cannot be done (the reason, for the CLI and the API); ``not_found``: the
    entry or study does not exist."""

    def __init__(self, message: str, *, not_found: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.not_found = not_found


@dataclass(frozen=True)
class Outcome:
    """What an action did: per entry, "released" / "discarded" / the reason it stayed held."""

    target: str
    done: dict[int, str]
    kept: dict[int, str]
    study_state: str | None = None

    def as_dict(self) -> dict:
        return {"target": self.target, "done": {str(k): v for k, v in self.done.items()},
                "kept": {str(k): v for k, v in self.kept.items()}, "study_state": self.study_state}


def entry_dict(e: QuarantineEntry, *, details: bool = False) -> dict:
    """An entry as the CLI and the API show it (never the Patient ID: ``same_patient`` says
    whether it is the study's)."""
    out = {"id": e.id, "kind": e.kind, "state": e.state, "reason": e.reason, "status": e.status,
           "study_uid": e.study_uid, "sop_uid": e.sop_uid, "calling_ae": e.calling_ae, "size": e.size,
           "received_at": e.received_at.isoformat() if e.received_at else None,
           "action_by": e.action_by, "action_at": e.action_at.isoformat() if e.action_at else None,
           "action_note": e.action_note}
    if details:
        out.update({"series_uid": e.series_uid, "sop_class_uid": e.sop_class_uid,
                    "file": Path(e.file).name if e.file else None,
                    "file_kept": bool(e.file and Path(e.file).exists())})
    return out


class Quarantine:
    def __init__(self, store: Store, registry: Registry, handler: StoreHandler) -> None:
        self.store = store
        self.registry = registry
        self.handler = handler

    @classmethod
    def open(cls, settings: Settings, registry: Registry | None = None) -> Quarantine:
        store = Store(settings.data_dir, sync=settings.sync_storage)
        registry = registry or Registry(settings.database_url, sync=settings.sync_storage)
        handler = StoreHandler(store, registry, max_instance_bytes=settings.max_instance_bytes,
                               max_study_instances=settings.max_study_instances)
        return cls(store, registry, handler)

    # --- reading ---------------------------------------------------------------------------------
    def adopt_files(self) -> int:
        """Record the kept files the table does not know (quarantined before the table existed,
        or while the registry was down) as held entries; how many."""
        known = self.registry.quarantined_files()
        added = 0
        for info_path in sorted(self.store.quarantine_dir.glob("*.json")):
            dcm = info_path.with_suffix(".dcm")
            if str(dcm.absolute()) in known or not dcm.exists():
                continue
            try:
                info = json.loads(info_path.read_text())
            except (OSError, ValueError):
                continue
            study = info.get("study_instance_uid")
            self.registry.add_quarantined(
                kind=info.get("kind") if info.get("kind") in KINDS else "refused",
                reason=str(info.get("reason", "")), status=str(info.get("status", "")), file=str(dcm.absolute()),
                size=int(info.get("received_bytes") or info.get("bytes") or dcm.stat().st_size),
                study_uid=study if valid_uid(study) else None, sop_uid=info.get("sop_instance_uid") or None,
                sop_class_uid=info.get("sop_class_uid") or None, calling_ae=str(info.get("calling_ae", "")))
            added += 1
        return added

    def list(self, *, state: str | None = "held", study_uid: str | None = None) -> list[QuarantineEntry]:
        self.adopt_files()
        return self.registry.quarantined(state=state, study_uid=study_uid)

    def entry(self, entry_id: int) -> QuarantineEntry:
        e = self.registry.quarantine_entry(entry_id)
        if e is None:
            raise QuarantineError(f"no quarantine entry #{entry_id}", not_found=True)
        return e

    def show(self, entry_id: int) -> dict:
        e = self.entry(entry_id)
        out = entry_dict(e, details=True)
        study = self.registry.study(e.study_uid) if e.study_uid else None
        if study is not None:
            out["study"] = {"state": study.state, "review_reason": study.review_reason,
                            "n_instances": study.n_instances,
                            "same_patient": None if e.patient_id is None else e.patient_id == study.patient_id}
        return out

    def study_of(self, target: str) -> str | None:
        """The Study Instance UID an action on ``target`` concerns (for the audit trail), if known."""
        try:
            key = self.parse_target(target)
        except QuarantineError:
            return None
        if isinstance(key, str):
            return key
        e = self.registry.quarantine_entry(key)
        return e.study_uid if e is not None else None

    # --- acting ----------------------------------------------------------------------------------
    @staticmethod
    def parse_target(target: str) -> int | str:
        """An entry's number (``12`` or ``#12``) or a Study Instance UID."""
        text = target.strip().lstrip("#")
        if text.isdigit() and "." not in text:
            return int(text)
        if valid_uid(text):
            return text
        raise QuarantineError(f"{target[:80]!r} is neither an entry number nor a Study Instance UID")

    def release(self, target: str, *, by: str, why: str | None = None) -> Outcome:
        key = self.parse_target(target)
        if isinstance(key, int):
            return self._release_entry(self._held(key), by, why)
        return self._release_study(key, by, why)

    def discard(self, target: str, *, by: str, why: str | None = None) -> Outcome:
        key = self.parse_target(target)
        if isinstance(key, int):
            e = self._held(key)
            self._discard_entry(e, by, why)
            self._unflag_if_done(e.study_uid)
            return Outcome(f"#{e.id}", {e.id: "discarded"}, {})
        return self._discard_study(key, by, why)

    def _held(self, entry_id: int) -> QuarantineEntry:
        e = self.entry(entry_id)
        if e.state != "held":
            raise QuarantineError(f"entry #{entry_id} was {e.state} already (by {e.action_by} at "
                                  f"{e.action_at:%Y-%m-%d %H:%M:%S} UTC)" if e.action_at else
                                  f"entry #{entry_id} is {e.state}")
        if e.kind == "study":
            raise QuarantineError(f"entry #{entry_id} records an action on a study, nothing to release")
        return e

    def _release_entry(self, e: QuarantineEntry, by: str, why: str | None) -> Outcome:
        try:
            outcome = self.handler.put_back(e, by=by, note=why)
        except Refused as r:
            raise QuarantineError(f"entry #{e.id} was refused again and stays held: {r.reason}") from None
        except ReleaseFailed as exc:
            raise QuarantineError(f"entry #{e.id} could not be stored now ({exc}); try again") from None
        except OSError as exc:
            raise QuarantineError(f"entry #{e.id}: its kept file cannot be read ({type(exc).__name__})") from None
        log.info("quarantine #%d released by %s (%s)", e.id, by, outcome)
        self._unflag_if_done(e.study_uid)
        study = self.registry.study(e.study_uid) if e.study_uid else None
        return Outcome(f"#{e.id}", {e.id: "released"}, {}, study.state if study else None)

    def _discard_entry(self, e: QuarantineEntry, by: str, why: str | None) -> None:
        if not self.registry.close_quarantined(e.id, "discarded", by=by, note=why):
            raise QuarantineError(f"entry #{e.id} is no longer held")
        if e.file:
            Path(e.file).unlink(missing_ok=True)  # the .json beside it stays, with the table row
        log.info("quarantine #%d discarded by %s", e.id, by)

    def _study(self, study_uid: str):
        study = self.registry.study(study_uid)
        if study is None:
            raise QuarantineError(f"no study {study_uid}", not_found=True)
        return study

    def _release_study(self, study_uid: str, by: str, why: str | None) -> Outcome:
        study = self._study(study_uid)
        released = self.registry.release_quarantined_study(study_uid)
        done: dict[int, str] = {}
        kept: dict[int, str] = {}
        for e in self.registry.quarantined(study_uid=study_uid):
            if e.kind == "study":
                continue
            try:
                self._release_entry(e, by, why)
                done[e.id] = "released"
            except QuarantineError as exc:
                kept[e.id] = exc.message
        if not released and not done and not kept and not study.review_reason:
            raise QuarantineError(f"study {study_uid} is not quarantined and holds no quarantined instance")
        if not kept:
            self.registry.flag_study(study_uid, None)
        action = self.registry.add_quarantine_action(
            kind="study", state="released", study_uid=study_uid, by=by, note=why,
            reason=("quarantined study released to receiving; " if released else "")
            + f"{len(done)} instance(s) released, {len(kept)} kept")
        log.info("study %s released by %s (entry #%d)", study_uid, by, action)
        return Outcome(study_uid, done, kept, self._study(study_uid).state)

    def _discard_study(self, study_uid: str, by: str, why: str | None) -> Outcome:
        study = self._study(study_uid)
        done: dict[int, str] = {}
        for e in self.registry.quarantined(study_uid=study_uid):
            if e.kind != "study":
                self._discard_entry(e, by, why)
                done[e.id] = "discarded"
        removed = 0
        if study.state == StudyState.QUARANTINED:  # quarantined whole: its stored instances too
            for inst in self.registry.instances_of(study_uid):
                self.registry.remove_instance(inst.sop_uid)
                Path(inst.path).unlink(missing_ok=True)
                removed += 1
            self.registry.set_study(study_uid, reason=f"discarded by {by[:100]}")
        if not done and not removed:
            raise QuarantineError(f"study {study_uid} is not quarantined and holds no quarantined instance")
        self.registry.flag_study(study_uid, None)
        action = self.registry.add_quarantine_action(
            kind="study", state="discarded", study_uid=study_uid, by=by, note=why,
            reason=f"{len(done)} quarantined instance(s) and {removed} stored instance(s) discarded")
        log.info("study %s discarded by %s (entry #%d)", study_uid, by, action)
        return Outcome(study_uid, done, {}, self._study(study_uid).state)

    def _unflag_if_done(self, study_uid: str | None) -> None:
        if study_uid and not [e for e in self.registry.quarantined(study_uid=study_uid) if e.kind != "study"]:
            self.registry.flag_study(study_uid, None)
