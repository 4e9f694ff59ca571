"""The ``followup`` command line (typer): the app, its main options, and its commands, each
module of this package one group of them (files: ``analysis``; the service's processes: ``serve``;
records: ``records``; putting studies back to work: ``batch``; administration: ``admin`` and
``quarantine``). Commands are registered here, in the order ``followup --help`` lists them."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import typer

from followup import __version__
from followup.cli.admin import audit_cmd, check_config_cmd, users_app
from followup.cli.analysis import analyze, inspect, synth
from followup.cli.batch import import_cmd, reanalyze_cmd, reconcile_cmd
from followup.cli.quarantine import quarantine_app
from followup.cli.records import patient_ref_key_cmd, procedures_app, status_cmd
from followup.cli.serve import serve_api_cmd, serve_dicom_cmd, worker_cmd

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="followup: residual-tumour assessment on follow-up breast MRI after cryoablation.",
)


@app.callback()
def main(
    ctx: typer.Context,
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log progress to stderr."),
    data_dir: Path | None = typer.Option(None, "--data-dir", show_default=False,
                                         help="Spool, store, quarantine, reports, SQLite file "
                                              "(env FOLLOWUP_DATA_DIR; default ./followup-data)."),
    db_url: str | None = typer.Option(None, "--db-url", show_default=False,
                                      help="SQLAlchemy URL (env FOLLOWUP_DB_URL; default: SQLite in the data dir)."),
    redis_url: str | None = typer.Option(None, "--redis-url", show_default=False,
                                         help="Celery broker (env FOLLOWUP_REDIS_URL; default "
                                              "redis://127.0.0.1:6379/0)."),
    api_token: str | None = typer.Option(None, "--api-token", show_default=False,
                                         help="Bearer token of the API (env FOLLOWUP_API_TOKEN)."),
) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    # pynetdicom logs a line per DIMSE message at INFO: noise at a PACS's rate (and time on the
    # receive path). Our listener logs one summary per association instead.
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)
    # The options override the environment (read by followup.config alone); each command builds
    # its Settings from both (``common.command_settings``) and passes it on, to workers too.
    ctx.obj = {"data_dir": data_dir, "db_url": db_url, "redis_url": redis_url, "api_token": api_token}


@app.command()
def version() -> None:
    """Print the product and algorithm version."""
    typer.echo(__version__)


app.command()(synth)
app.command()(inspect)
app.command()(analyze)
app.add_typer(procedures_app, name="procedures")
app.add_typer(users_app, name="users")
app.command("audit")(audit_cmd)
app.add_typer(quarantine_app, name="quarantine")
app.command("serve-dicom")(serve_dicom_cmd)
app.command("worker")(worker_cmd)
app.command("serve-api")(serve_api_cmd)
app.command("check-config")(check_config_cmd)
app.command("reanalyze")(reanalyze_cmd)
app.command("import")(import_cmd)
app.command("reconcile")(reconcile_cmd)
app.command("status")(status_cmd)
app.command("patient-ref-key")(patient_ref_key_cmd)
