"""Commands that put stored studies (back) to work: ``reanalyze``, ``import`` and ``reconcile``."""

from __future__ import annotations

import datetime as dt
import json
import sys
import time
from pathlib import Path

import typer

from followup.cli.common import (
    audit_batch_studies,
    cli_actor,
    command_settings,
    open_registry,
    record_audit,
    work_queue,
)


def reanalyze_cmd(
    since: str | None = typer.Option(None, "--since", help="Studies dated on or after YYYY-MM-DD."),
    study: list[str] = typer.Option([], "--study", help="Study Instance UID (repeat)."),
    all_studies: bool = typer.Option(False, "--all", help="Every analysed follow-up study."),
    reason: str = typer.Option("", "--reason"),
    resume: int | None = typer.Option(None, "--resume", help="Resume batch N (re-send its queued analyses)."),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="Show progress until the batch is done."),
) -> None:
    """Re-run stored studies on the batch queue (new report versions; real-time work keeps priority)."""
    from followup.service.batch import resume_batch, start_reanalysis

    settings = command_settings()
    reg = open_registry(settings)
    queue = work_queue(settings, reg)
    if resume is not None:
        if reg.batch(resume) is None:
            typer.secho(f"error [batch]: no batch {resume}", err=True, fg=typer.colors.RED)
            raise typer.Exit(code=2)
        n = resume_batch(reg, queue, resume)
        record_audit(reg, "batch.resume", detail=f"batch {resume}: {n} analyses sent again")
        typer.echo(f"batch {resume}: {n} queued analyses sent again")
        batch_id = resume
    else:
        try:
            day = dt.date.fromisoformat(since) if since else None
            batch = start_reanalysis(reg, queue, since=day, study_uids=list(study) or None,
                                     all_studies=all_studies, reason=reason, created_by=cli_actor())
        except ValueError as exc:
            typer.secho(f"error [batch]: {exc}", err=True, fg=typer.colors.RED)
            raise typer.Exit(code=2) from exc
        batch_id = batch.id
        record_audit(reg, "batch.start", detail=f"batch {batch_id}: {batch.total} studies")
        audit_batch_studies(reg, batch_id)
        typer.echo(f"batch {batch_id}: {batch.total} studies enqueued on 'batch' "
                   f"(resume with: followup reanalyze --resume {batch_id})")
    if not wait:
        return
    with typer.progressbar(length=max(reg.batch_progress(batch_id)["total"], 1), label=f"batch {batch_id}") as bar:
        done = 0
        while True:
            prog = reg.batch_progress(batch_id)
            bar.update(prog["done"] - done)
            done = prog["done"]
            if prog["remaining"] == 0:
                break
            time.sleep(1.0)
    typer.echo(json.dumps(reg.batch_progress(batch_id)["by_status"]))


def import_cmd(
    folder: Path = typer.Argument(..., exists=True, file_okay=False, dir_okay=True,
                                  help="Folder of DICOM files (earlier studies exported from PACS or a disk)."),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Also the files in its sub-folders."),
    analyse: bool = typer.Option(True, "--analyse/--no-analyse",
                                 help="Queue the studies that received new images for analysis on the batch queue."),
) -> None:
    """Bring existing DICOM files into the store and registry through the listener's own validation."""
    from followup.service.importer import files_in, import_files, queue_imported
    from followup.service.patients import index_patients
    from followup.service.store import Store

    settings = command_settings()
    reg = open_registry(settings)
    paths = files_in(folder, recursive)
    if not paths:
        hint = "" if recursive else " (sub-folders: --recursive)"
        typer.secho(f"error [import]: no file to import in {folder}{hint}", err=True, fg=typer.colors.RED)
        raise typer.Exit(code=2)
    store = Store(settings.data_dir, sync=settings.sync_storage)
    with typer.progressbar(length=len(paths), label="importing", file=sys.stderr) as bar:
        res = import_files(paths, store, reg, on_file=lambda _path, _outcome: bar.update(1))
    index_patients(reg)
    typer.echo(f"{len(paths)} files: {res.stored} stored, {res.duplicates} duplicate (already stored), "
               f"{res.refused} refused, {len(res.failed)} failed; {len(res.studies)} study/studies")
    for reason, n in sorted(res.reasons().items(), key=lambda kv: (-kv[1], kv[0])):
        typer.echo(f"  {n} x {reason}")
    if res.refused:
        typer.echo(f"refused files are kept with their reason in {store.quarantine_dir}")
    if analyse and res.new_images:
        batch, failed = queue_imported(reg, work_queue(settings, reg), res.new_images,
                                       reason=f"import of {len(res.new_images)} study/studies")
        if batch is not None:
            record_audit(reg, "batch.start", detail=f"batch {batch.id}: import of {batch.total} studies")
            audit_batch_studies(reg, batch.id, list((batch.selector or {}).get("study_uids") or ()))
            typer.echo(f"batch {batch.id}: {batch.total - len(failed)} study/studies queued for analysis on 'batch' "
                       f"(progress: the page's reanalysis review; after a broker restart: "
                       f"followup reanalyze --resume {batch.id})")
        if failed:
            typer.secho(f"error [broker]: {len(failed)} study/studies could not be queued now; the listener's "
                        "reconciliation sweep (or followup reconcile) sends them", err=True, fg=typer.colors.RED)
    elif not analyse:
        typer.echo("not queued for analysis (--no-analyse)")
    if res.failed:
        raise typer.Exit(code=1)


def reconcile_cmd(older_than: float = typer.Option(600.0, "--older-than",
                                                   help="Seconds an analysis may stay queued/running.")) -> None:
    """Re-send work lost by the broker (after a Redis restart): the registry is the source of truth."""
    from followup.service.reconcile import sweep

    settings = command_settings()
    reg = open_registry(settings)
    res = sweep(reg, work_queue(settings, reg), older_than_s=older_than,  # analyses still in Redis are left alone
                lease_s=settings.analysis_lease_s)  # ... but for a dead worker's
    typer.echo(f"{len(res.studies_enqueued)} stable study/studies enqueued, "
               f"{len(res.analyses_resent)} analysis/analyses re-sent "
               f"({len(res.analyses_taken_over)} of dead workers), "
               f"deliveries of {len(res.deliveries_resent)} analysis/analyses re-sent")
    if res.broker_unreadable or res.errors:
        typer.secho("error [broker]: Redis could not be read or written; nothing lost, run again once it is up",
                    err=True, fg=typer.colors.RED)
        raise typer.Exit(code=2)
