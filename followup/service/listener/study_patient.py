"""Which patient a study belongs to, when an instance of another patient arrives for it (issue
22, F2). Pure: from what the registry holds (docs/security/listener.md, "The study's patient").

The rule, in order:

1. A study that has been analysed, reported or kept as a baseline keeps its patient: a later
   instance of another patient is a stray (no report is ever withdrawn by one).
2. A procedure record decides: when exactly one of the two patients (the study's, the arriving
   instance's) has a procedure record, the study is that patient's. The service analyses a
   study only for a patient with a record, so the record names the patient the study was made
   for; a stray sent first (e.g. a misfiled image under the study's UID) loses the study as soon
   as its genuine patient's first instance arrives.
3. Otherwise (both or neither have a record) the majority of the study's instances decides: the
   arriving patient takes the study only with more instances (held as strays, this one
   included) than the study holds; a tie keeps the study's patient (the first). One stray sent
   first therefore costs the genuine study one instance, answered with a failure and stored
   when the second arrives; an attacker must send more instances than the genuine study has.

The losing patient's instances are quarantined one by one (kind ``stray``), never mixed into the
study, and the study is flagged for review."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Owner(StrEnum):
    KEEP = "keep"  # the study stays its patient's: the arriving instance is a stray
    SWITCH = "switch"  # the study becomes the arriving instance's patient's


@dataclass(frozen=True)
class Contest:
    """What the rule looks at, read from the registry."""

    settled: bool  # analysed, reported or kept as a baseline
    study_has_record: bool  # the study's patient has a procedure record
    arriving_has_record: bool  # the arriving instance's patient has one
    study_instances: int  # instances the study holds (all its patient's)
    arriving_instances: int  # the arriving patient's strays held for the study, this one included


def study_owner(c: Contest) -> Owner:
    if c.settled:
        return Owner.KEEP
    if c.study_has_record != c.arriving_has_record:
        return Owner.KEEP if c.study_has_record else Owner.SWITCH
    return Owner.SWITCH if c.arriving_instances > c.study_instances else Owner.KEEP


def why(owner: Owner, c: Contest) -> str:
    """The reason kept with the quarantined instance(s) and the study's review flag (no patient
    identifiers)."""
    if owner is Owner.KEEP:
        basis = ("the study has been analysed" if c.settled else
                 "the study's patient has a procedure record, this one's has none"
                 if c.study_has_record and not c.arriving_has_record else
                 f"the study holds {c.study_instances} instance(s) of its patient, {c.arriving_instances} "
                 "of this one")
        return f"Patient ID differs from its study's (two patients in one study): {basis}"
    basis = ("this patient has a procedure record, the study's first patient has none"
             if c.arriving_has_record and not c.study_has_record else
             f"{c.arriving_instances} instance(s) of another patient outnumber its {c.study_instances}")
    return f"Patient ID differs from its study's, which became another patient's: {basis}"
