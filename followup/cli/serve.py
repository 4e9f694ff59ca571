"""The long-running processes of the service: ``serve-dicom``, ``worker`` and ``serve-api``."""

from __future__ import annotations

from pathlib import Path

import typer

from followup.cli.common import (
    command_settings,
    fail,
    install_patient_ref_key,
    open_registry,
    warn_insecure,
    work_queue,
)
from followup.errors import FollowupError


def serve_dicom_cmd(
    ae_title: str | None = typer.Option(None, "--ae-title", show_default=False,
                                        help="Our AE title (env FOLLOWUP_AE_TITLE; default FOLLOWUP)."),
    port: int = typer.Option(11112, "--port"),
    allow: list[str] = typer.Option(..., "--allow", help="Calling AE title allowed to send (repeat)."),
    destination: str | None = typer.Option(None, "--destination", show_default=False,
                                           help="PACS receiving SR/SEG/PDF: AET@HOST:PORT, or AET@HOST:PORT/tls "
                                                "(C-STORE), or a DICOMweb base URL https://HOST/dicom-web "
                                                "(STOW-RS; credentials: FOLLOWUP_DICOMWEB_*) "
                                                "(env FOLLOWUP_DESTINATION)."),
    quiet_seconds: float = typer.Option(30.0, "--quiet-seconds", help="Stable-study quiet period."),
    host: str | None = typer.Option(None, "--host", show_default=False,
                                    help="Interface to listen on (env FOLLOWUP_DICOM_HOST; default 0.0.0.0)."),
    tls_cert: Path | None = typer.Option(None, "--tls-cert", show_default=False,
                                         help="Our certificate (PEM): the listener speaks DICOM TLS "
                                              "(env FOLLOWUP_TLS_CERT)."),
    tls_key: Path | None = typer.Option(None, "--tls-key", show_default=False,
                                        help="The certificate's private key (PEM) (env FOLLOWUP_TLS_KEY)."),
    tls_ca: Path | None = typer.Option(None, "--tls-ca", show_default=False,
                                       help="CA bundle (PEM): callers need a certificate it signed "
                                            "(mutual TLS); also verifies the PACS when sending (env FOLLOWUP_TLS_CA)."),
    tls_destination: bool = typer.Option(False, "--tls-destination",
                                         help="Send results to the destination over TLS "
                                              "(env FOLLOWUP_TLS_DESTINATION=1)."),
    max_instance_bytes: int | None = typer.Option(
        None, "--max-instance-bytes", min=1, show_default=False,
        help="Largest instance accepted (default 512 MiB); larger ones are refused (0xA701) "
             "(env FOLLOWUP_MAX_INSTANCE_BYTES)."),
    max_study_instances: int | None = typer.Option(
        None, "--max-study-instances", min=1, show_default=False,
        help="Most instances kept for one study (default 10000); more are refused (0xA702) "
             "(env FOLLOWUP_MAX_STUDY_INSTANCES)."),
    max_associations: int | None = typer.Option(
        None, "--max-associations", min=1, show_default=False,
        help="Most concurrent associations (default 8); more are rejected (env FOLLOWUP_MAX_ASSOCIATIONS)."),
    metrics_port: int | None = typer.Option(
        None, "--metrics-port", min=1, show_default=False,
        help="Serve Prometheus metrics and /healthz on this port (env FOLLOWUP_METRICS_PORT; interface: "
             "FOLLOWUP_METRICS_HOST, default 127.0.0.1)."),
) -> None:
    """The DICOM node PACS auto-routes to: C-ECHO, C-STORE; stable studies go to the workers."""
    from followup.service.listener import listener_ssl_context, serve_dicom
    from followup.service.reconcile import start_periodic_sweep

    try:
        settings = listener_settings(destination, tls_destination, ae_title=ae_title, tls_cert=tls_cert,
                                      tls_key=tls_key, tls_ca=tls_ca, max_instance_bytes=max_instance_bytes,
                                      max_study_instances=max_study_instances, max_associations=max_associations,
                                      dicom_host=host, metrics_port=metrics_port)
        listener_ssl_context(settings)  # unreadable certificate or key: say so now, in one line
    except (ValueError, OSError) as exc:
        typer.secho(f"error [config]: {exc}", err=True, fg=typer.colors.RED)
        raise typer.Exit(code=2) from exc
    warn_insecure(settings, "dicom")
    reg = open_registry(settings)
    dest = settings.destination
    if dest is not None:
        reg.put_setting("destination", str(dest))  # workers started without one send there
    queue = work_queue(settings, reg)
    mode = ("TLS, client certificates required" if settings.tls_ca else "TLS") if settings.listener_tls \
        else "no TLS"
    host = settings.dicom_host
    typer.echo(f"listening as {settings.ae_title} on {host}:{port} ({mode}); allowed callers: {', '.join(allow)}; "
               f"results to {dest or 'nowhere (no --destination)'}; at most {settings.max_associations} "
               f"associations, {settings.max_instance_bytes} bytes an instance, "
               f"{settings.max_study_instances} instances a study")
    start_periodic_sweep(settings, reg, queue)  # re-sends what a broker restart lost
    _serve_listener_metrics(settings, reg)
    from followup.service import metrics

    def hand_over(study_uid: str) -> None:
        queue.enqueue_study(study_uid)
        metrics.HANDOVERS.inc()

    serve_dicom(settings, ae_title=settings.ae_title, port=port, allow=list(allow), quiet_seconds=quiet_seconds,
                on_stable=hand_over, host=host)


def _serve_listener_metrics(settings, registry) -> None:
    """The listener's events and the service's state (``followup.service.metrics.ServiceState``) on
    ``settings.metrics_port``, when set."""
    if not settings.metrics_port:
        return
    from prometheus_client import REGISTRY

    from followup.service import metrics

    metrics.initialise_listener()
    REGISTRY.register(metrics.ServiceState(registry, settings.data_dir, settings.redis_url))
    metrics.serve(settings.metrics_port, settings.metrics_host, REGISTRY)


def listener_settings(destination: str | None, tls_destination: bool, **overrides):
    """serve-dicom's Settings: ``--destination`` (else FOLLOWUP_DESTINATION), made TLS by
    ``--tls-destination`` (or FOLLOWUP_TLS_DESTINATION=1, applied by Settings.from_env); a DICOMweb
    URL says https itself."""
    from dataclasses import replace

    from followup.remote_nodes import parse_remote, with_tls

    settings = command_settings(destination=parse_remote(destination) if destination else None, **overrides)
    if tls_destination and settings.destination is not None and not settings.destination.tls:
        settings = replace(settings, destination=with_tls(settings.destination, "--tls-destination"))
    return settings


def worker_cmd(
    queues: str = typer.Option("realtime,batch", "--queues"),
    concurrency: int = typer.Option(1, "--concurrency"),
    hostname: str | None = typer.Option(None, "--hostname"),
    metrics_port: int | None = typer.Option(
        None, "--metrics-port", min=1, show_default=False,
        help="Serve the worker's Prometheus metrics (all its processes) and /healthz on this port "
             "(env FOLLOWUP_METRICS_PORT; interface: FOLLOWUP_METRICS_HOST, default 127.0.0.1)."),
    heartbeat_file: Path | None = typer.Option(
        None, "--heartbeat-file", show_default=False,
        help="Touch this file at each heartbeat (every 15 s): a liveness probe reads its age."),
) -> None:
    """A Celery worker on these queues, configured with this command's settings (options and
    FOLLOWUP_* environment)."""
    from workers.celery_app import configure

    argv = ["worker", "-Q", queues, "--concurrency", str(concurrency), "--prefetch-multiplier", "1", "-l", "INFO"]
    if hostname:
        argv += ["--hostname", hostname]
    settings = command_settings(metrics_port=metrics_port)
    if settings.metrics_port:
        _serve_worker_metrics(settings, queues.split(","))
    if heartbeat_file is not None:
        from workers import heartbeat

        heartbeat.heartbeat_file = heartbeat_file
    warn_insecure(settings, "worker")
    install_patient_ref_key(settings)
    configure(settings).worker_main(argv)


def _serve_worker_metrics(settings, queues: list[str]) -> None:
    """Every process of this worker writes its metrics to one folder (``PROMETHEUS_MULTIPROC_DIR``,
    else a new temporary one: never shared by two workers), served by this, the main process."""
    import os
    import tempfile

    from followup.service import metrics
    from workers import heartbeat

    folder = os.environ.get(metrics.MULTIPROC_ENV) or tempfile.mkdtemp(prefix="followup-metrics-")
    metrics.use_multiprocess_dir(Path(folder))
    metrics.initialise_worker(queues)
    metrics.serve(settings.metrics_port, settings.metrics_host, metrics.multiprocess_registry(), heartbeat.alive)


def serve_api_cmd(port: int = typer.Option(8080, "--port"),
                  host: str | None = typer.Option(None, "--host", show_default=False,
                                                  help="Interface to listen on (env FOLLOWUP_API_HOST; "
                                                       "default 127.0.0.1)."),
                  tls_cert: Path | None = typer.Option(None, "--tls-cert", show_default=False,
                                                       help="Certificate (PEM, chain first): HTTPS "
                                                            "(env FOLLOWUP_API_TLS_CERT)."),
                  tls_key: Path | None = typer.Option(None, "--tls-key", show_default=False,
                                                      help="Its private key (PEM) (env FOLLOWUP_API_TLS_KEY).")
                  ) -> None:
    """The HTTP API and web page (FOLLOWUP_API_TOKEN, users of `followup users`, or OIDC;
    docs/security/api.md), over HTTPS with a certificate."""
    from followup.api.app import serve_api

    try:
        settings = command_settings(api_host=host, api_tls_cert=tls_cert, api_tls_key=tls_key)
    except ValueError as exc:
        typer.secho(f"error [config]: {exc}", err=True, fg=typer.colors.RED)
        raise typer.Exit(code=2) from exc
    for path in (settings.api_tls_cert, settings.api_tls_key):
        if path is not None and not Path(path).is_file():
            typer.secho(f"error [config]: API TLS file {str(path)!r} is not a readable file", err=True,
                        fg=typer.colors.RED)
            raise typer.Exit(code=2)
    warn_insecure(settings, "api")
    reg = open_registry(settings)
    try:
        serve_api(settings, port=port, host=settings.api_host, registry=reg, queue=work_queue(settings, reg))
    except FollowupError as err:  # no way to sign in, a weak token, unreadable OIDC keys
        fail(err)
