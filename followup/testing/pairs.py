"""Synthetic study pairs (``followup synth``'s folders) in a service's store and registry."""

from __future__ import annotations

import json
from pathlib import Path

from followup.procedure import load_procedure
from followup.service.importer import import_folder
from followup.service.registry import Registry
from followup.service.store import Store


def study_uid(pair: Path, name: str) -> str:
    """The Study Instance UID of the pair's ``baseline`` or ``followup`` study (from truth.json)."""
    return json.loads((pair / "truth.json").read_text())["studies"][name]["study_uid"]


def store_pair(reg: Registry, store: Store, pair: Path) -> None:
    """Procedure record, baseline and follow-up in the store; the baseline classified."""
    reg.add_procedure(load_procedure(pair / "procedure.json"))
    for name in ("baseline", "followup"):
        import_folder(pair / name, store, reg)
    reg.claim_stable_studies(0)
