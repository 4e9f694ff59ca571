"""Commands on the records of the service: ``procedures``, ``status`` and ``patient-ref-key``."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from followup.cli.common import cli_actor, command_settings, fail, open_registry, record_audit, work_queue
from followup.errors import FollowupError

procedures_app = typer.Typer(help="The procedure registry (procedure.json records).", no_args_is_help=True)


@procedures_app.command("add")
def procedures_add(files: list[Path] = typer.Argument(..., help="procedure.json file(s).")) -> None:
    """Add (or update) procedure records; analyses waiting for them resume."""
    from followup.procedure import load_procedure
    from followup.pseudonym import patient_ref
    from followup.service.baselines import resume_for_procedure

    settings = command_settings()
    reg = open_registry(settings)
    queue = work_queue(settings, reg)
    for f in files:
        try:
            rec = load_procedure(f)
        except FollowupError as err:
            fail(err)
            return
        existed = any(q.procedure_date == rec.procedure_date and q.laterality == rec.laterality
                      for q in reg.procedures(rec.patient_id))
        p = reg.add_procedure(rec, recorded_by=cli_actor())
        record_audit(reg, "procedure.replace" if existed else "procedure.add", patient_ref=patient_ref(rec.patient_id),
               detail=f"procedure {p.id} ({rec.procedure_date}, {rec.laterality}) from {f.name}")
        waiting = resume_for_procedure(reg, queue, rec.patient_id)
        typer.echo(f"procedure {p.id}: {rec.procedure_date} ({rec.laterality}) added from {f.name}"
                   + (f"; resumed {len(waiting)} deferred study/studies" if waiting else ""))


@procedures_app.command("list")
def procedures_list(as_json: bool = typer.Option(False, "--json")) -> None:
    """List procedure records (patient shown by pseudonymous reference)."""
    from followup.pseudonym import patient_ref

    rows = [{"id": p.id, "patient_ref": patient_ref(p.patient_id), "procedure_date": p.procedure_date.isoformat(),
             "laterality": p.laterality, "diameter_mm": p.record["lesion"]["diameter_mm"],
             "histology": p.record["lesion"]["histology"]} for p in open_registry(command_settings()).procedures()]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        typer.echo(f"{r['id']:5d}  {r['procedure_date']}  {r['laterality']}  patient {r['patient_ref']}  "
                   f"{r['diameter_mm']:g} mm {r['histology']}")


def status_cmd(study_uid: str | None = typer.Argument(None),
               as_json: bool = typer.Option(False, "--json")) -> None:
    """Studies and their analyses (one study in detail when a UID is given)."""
    reg = open_registry(command_settings())
    if study_uid is None:
        rows = []
        for s in reg.studies():
            a = reg.latest_analysis(s.study_uid)
            rows.append({"study_uid": s.study_uid, "study_date": str(s.study_date), "state": s.state,
                         "role": s.role, "instances": s.n_instances,
                         "probability": a.probability if a else None,
                         "analysis": f"{a.algorithm_version}-r{a.revision} {a.status}" if a else None,
                         "review": s.review_reason})
        if as_json:
            typer.echo(json.dumps(rows, indent=2))
        else:
            for r in rows:
                p = "" if r["probability"] is None else f" p={r['probability']:.2f}"
                flag = "  REVIEW: see followup quarantine list" if r["review"] else ""
                typer.echo(f"{r['study_uid']}  {r['study_date']}  {r['state']:10s} {r['role']:9s} "
                           f"{r['instances']:5d} instances  {r['analysis'] or '-'}{p}{flag}")
        return
    s = reg.study(study_uid)
    if s is None:
        typer.secho(f"error [not-found]: no study {study_uid}", err=True, fg=typer.colors.RED)
        raise typer.Exit(code=2)
    detail = {"study_uid": s.study_uid, "state": s.state, "role": s.role, "reason": s.reason,
              "instances": s.n_instances, "review": s.review_reason,
              "quarantined": len(reg.quarantined(study_uid=study_uid)),
              "analyses": [{"id": a.id, "version": a.algorithm_version, "revision": a.revision,
                            "status": a.status, "reason": a.reason, "probability": a.probability,
                            "interval": [a.interval_low, a.interval_high], "queue": a.queue,
                            "duration_s": a.duration_s, "report_dir": a.report_dir,
                            "deliveries": [{"kind": d.kind, "status": d.status, "attempts": d.attempts,
                                            "last_error": d.last_error} for d in reg.deliveries(analysis_id=a.id)]}
                           for a in reg.analyses(study_uid=study_uid)]}
    typer.echo(json.dumps(detail, indent=2, default=str))


def patient_ref_key_cmd(accept_new: bool = typer.Option(
        False, "--accept-new", help="Record this key as the registry's, after it was replaced on purpose "
                                    "(every patient_ref changes).")) -> None:
    """Where the patient-ref key is and its fingerprint (back the key file up with the registry)."""
    from followup.pseudonym import FINGERPRINT_SETTING, check_registry, fingerprint, load_key
    from followup.service.registry import Registry

    settings = command_settings()
    try:
        key = load_key(settings.patient_ref_key, settings.patient_ref_key_path)
        registry = Registry(settings.database_url)
        recorded = registry.get_setting(FINGERPRINT_SETTING)
        check_registry(key, registry, accept_new=accept_new)
    except FollowupError as err:
        fail(err)
        return
    source = "FOLLOWUP_PATIENT_REF_KEY" if settings.patient_ref_key else str(settings.patient_ref_key_path)
    typer.echo(f"key: {source}\nfingerprint: {fingerprint(key)}"
               + (f" (was {recorded})" if recorded and recorded != fingerprint(key) else ""))
