"""The service under load as Prometheus sees it (issue 25: "the dashboard during a load run";
Grafana cannot run here, docs/operations/monitoring.md says why, so this shows the answers of the
dashboard's own queries from a real Prometheus, and a screenshot of Prometheus's graph page).

Real processes on loopback: redis-server, dcmtk storescp as PACS, the listener, one worker and the
API with their metrics on, and Debian's ``prometheus`` scraping the three every second with the
alert rules of deploy/prometheus loaded. The cohort of ``followup.synth.cohort`` (``--patients``
baselines and follow-ups) is sent by 4 concurrent associations, plus one instance the listener
refuses; while the worker analyses, the dashboard's queries are asked every ``--every`` seconds.

Usage: .venv/bin/python benchmarks/bench_monitoring.py [--patients 6] [--every 5]
Writes benchmarks/results/monitoring.md (and monitoring-prometheus.png when Chromium is installed)
and prints the table.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pydicom

from followup.synth.cohort import make_cohort, sending_lanes
from followup.testing import service_harness as harness
from followup.testing.bench import write_results
from followup.testing.service_harness import FOLLOWUP, free_port, process

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CACHE = Path(os.environ.get("FOLLOWUP_BENCH_CACHE", "/tmp/followup-bench"))
METRICS_TOKEN = "bench-monitoring-metrics-token-0123456789abcdef"
API_TOKEN = "bench-monitoring-api-token-0123456789abcdef"
# (column, the dashboard's query): each answered as one number (the sum over its series)
QUERIES = (
    ("instances stored", 'sum(followup_instances_total{outcome="stored"})'),
    ("refused", "sum(followup_instances_refused_total)"),
    ("realtime depth", 'max(followup_queue_depth{queue="realtime"})'),
    ("oldest task s", 'max(followup_queue_oldest_task_age_seconds{queue="realtime"})'),
    ("analysing", 'max(followup_studies{state="analysing"})'),
    ("complete", 'max(followup_studies{state="complete"})'),
    ("analyses ended", "sum(followup_analyses_total)"),
    ("objects sent", 'sum(followup_deliveries_total{outcome="sent"})'),
    ("pending", 'max(followup_deliveries{status="pending"})'),
    ("live workers", "count(time() - followup_worker_last_heartbeat_timestamp_seconds < 120) or vector(0)"),
    ("disk free %", "100 * min(followup_disk_free_bytes / followup_disk_size_bytes)"),
)
GRAPH = ('sum by (state) (followup_studies{state=~"receiving|stable|analysing|complete|baseline"})',
         "sum by (queue) (followup_queue_depth)")


def query(port: int, promql: str) -> float | None:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=10) as resp:
        result = json.loads(resp.read())["data"]["result"]
    return sum(float(r["value"][1]) for r in result) if result else None


def prometheus_config(tmp: Path, listener: int, worker: int, api: int) -> Path:
    (tmp / "metrics-token").write_text(METRICS_TOKEN)
    cfg = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
           "rule_files": [str(ROOT / "deploy/prometheus/alerts.yml")],
           "scrape_configs": [
               {"job_name": "followup-listener", "static_configs": [{"targets": [f"127.0.0.1:{listener}"]}]},
               {"job_name": "followup-worker", "static_configs": [{"targets": [f"127.0.0.1:{worker}"]}]},
               {"job_name": "followup-api", "static_configs": [{"targets": [f"127.0.0.1:{api}"]}],
                "authorization": {"credentials_file": str(tmp / "metrics-token")}}]}
    path = tmp / "prometheus.yml"
    path.write_text(json.dumps(cfg))
    return path


def refused_instance(src: Path, out: Path) -> Path:
    ds = pydicom.dcmread(src)
    ds.StudyInstanceUID, ds.SeriesInstanceUID = pydicom.uid.generate_uid(), pydicom.uid.generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    ds.Rows = 0
    out.mkdir()
    ds.save_as(out / "refused.dcm", enforce_file_format=True)
    return out


def send(lanes: list[list[Path]], port: int) -> None:
    def lane(folders: list[Path]) -> None:
        for folder in folders:
            subprocess.run(["storescu", "-aet", "PACS", "-aec", "FOLLOWUP", "+sd", "+r", "-xs", "127.0.0.1", str(port),
                            str(folder)], check=False, capture_output=True, env=dict(os.environ, TCP_NODELAY="1"))

    threads = [threading.Thread(target=lane, args=(ls,)) for ls in lanes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def screenshot(prom_port: int, out: Path) -> bool:
    """Prometheus's graph page of the last minutes (the studies by state, the queues), as PNG."""
    chromium = next((p for p in map(shutil.which, ("chromium", "chromium-browser")) if p), None)
    if chromium is None:
        return False
    from playwright.sync_api import sync_playwright

    params = {}
    for i, expr in enumerate(GRAPH):
        params.update({f"g{i}.expr": expr, f"g{i}.tab": "0", f"g{i}.range_input": "10m", f"g{i}.stacked": "0"})
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1300})
        page.goto(f"http://127.0.0.1:{prom_port}/graph?" + urllib.parse.urlencode(params))
        page.wait_for_timeout(4000)
        page.screenshot(path=str(out), full_page=True)
        browser.close()
    return True


def run(tmp: Path, patients: int, every: float) -> tuple[list[tuple[float, list]], dict, str, bool]:
    cases = make_cohort(CACHE / "monitoring-cohort", patients)
    lanes = sending_lanes(cases, 4)
    refused = refused_instance(next((cases[0].path / "followup").rglob("*.dcm")), tmp / "refused")
    followups = len(cases)
    with harness.redis_server(tmp) as redis_url, harness.storescp(tmp) as (pacs_port, _received):
        env = dict(harness.service_env(tmp / "data", redis_url), FOLLOWUP_API_TOKEN=API_TOKEN,
                   FOLLOWUP_METRICS_TOKEN=METRICS_TOKEN)
        subprocess.run([FOLLOWUP, "procedures", "add", *[str(c.path / "procedure.json") for c in cases]],
                       env=env, check=True, capture_output=True)
        port, api, lm, wm, prom = (free_port() for _ in range(5))
        with process([FOLLOWUP, "serve-dicom", "--port", str(port), "--host", "127.0.0.1", "--allow", "PACS",
                      "--destination", f"PACS@127.0.0.1:{pacs_port}", "--quiet-seconds", "2",
                      "--metrics-port", str(lm)], tmp / "listener.log", env), \
             process([FOLLOWUP, "worker", "--queues", "realtime,batch", "--concurrency", "1",
                      "--metrics-port", str(wm)], tmp / "worker.log", env), \
             process([FOLLOWUP, "serve-api", "--port", str(api)], tmp / "api.log", env), \
             process(["prometheus", f"--config.file={prometheus_config(tmp, lm, wm, api)}",
                      f"--storage.tsdb.path={tmp / 'tsdb'}", f"--web.listen-address=127.0.0.1:{prom}"],
                     tmp / "prometheus.log"):
            for p in (port, api, lm, wm, prom):
                harness.wait_port(p)
            time.sleep(3)
            t0 = time.time()
            sender = threading.Thread(target=send, args=([*lanes[:-1], [*lanes[-1], refused]], port))
            sender.start()
            rows: list[tuple[float, list]] = []
            deadline = t0 + 1800
            while time.time() < deadline:
                rows.append((time.time() - t0, [query(prom, q) for _, q in QUERIES]))
                done = query(prom, 'max(followup_studies{state="complete"})') or 0
                if not sender.is_alive() and done >= followups and not query(prom, 'max(followup_deliveries'
                                                                                   '{status="pending"})'):
                    break
                time.sleep(every)
            sender.join()
            time.sleep(3)
            rows.append((time.time() - t0, [query(prom, q) for _, q in QUERIES]))
            alerts = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{prom}/api/v1/alerts", timeout=10).read())
            firing = ", ".join(sorted(f"{a['labels']['alertname']} ({a['state']})"
                                      for a in alerts["data"]["alerts"])) or "none"
            stages = {}
            for stage in ("read_followup", "read_baseline", "pdf", "dicom", "total"):
                stages[stage] = query(prom, f'sum(followup_analysis_stage_seconds_sum{{stage="{stage}"}}) / '
                                            f'sum(followup_analysis_stage_seconds_count{{stage="{stage}"}})')
            shot = screenshot(prom, HERE / "results" / "monitoring-prometheus.png")
    return rows, stages, firing, shot


def fmt(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.0f}" if abs(v - round(v)) < 1e-9 or abs(v) >= 100 else f"{v:.1f}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--patients", type=int, default=6)
    ap.add_argument("--every", type=float, default=5.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-monitoring-") as tmp:
        rows, stages, alerts, shot = run(Path(tmp), args.patients, args.every)
    head = "| t (s) | " + " | ".join(name for name, _ in QUERIES) + " |"
    lines = [f"# Monitoring under load ({dt.date.today().isoformat()}, 2 cores, one worker on both queues)", "",
             f"Load: {args.patients} patients (a baseline and a follow-up each, the small cohort of "
             "`followup.synth.cohort`) sent by 4 concurrent associations, then one instance the listener "
             "refuses (empty matrix). A real Prometheus (Debian 2.42) scraped the listener, the worker and the "
             f"API every second; every {args.every:g} s the dashboard's queries were asked of it "
             "(`deploy/grafana/followup-dashboard.json`; Grafana itself cannot run here, "
             "docs/operations/monitoring.md).", "",
             "Queries: " + "; ".join(f"{name} = `{q}`" for name, q in QUERIES), "",
             head, "| " + " | ".join(["---:"] * (len(QUERIES) + 1)) + " |"]
    lines += [f"| {t:.0f} | " + " | ".join(fmt(v) for v in values) + " |" for t, values in rows]
    lines += ["", f"Load average at the end: {os.getloadavg()[0]:.1f} (other work on the machine slows every figure)."]
    lines += ["", "Mean time per analysis stage (s), from `followup_analysis_stage_seconds`: "
              + ", ".join(f"{k} {fmt(v) if v is None else f'{v:.2f}'}" for k, v in stages.items()) + ".", "",
              f"Alerts at the end (pending or firing): {alerts}.", ""]
    if shot:
        lines += ["Prometheus's graph page at the end (studies by state, queue depth): "
                  "![Prometheus graph](monitoring-prometheus.png)", ""]
    lines += [f"Command: `.venv/bin/python benchmarks/bench_monitoring.py --patients {args.patients} "
              f"--every {args.every:g}`", ""]
    write_results(HERE / "results" / "monitoring.md", "\n".join(lines))


if __name__ == "__main__":
    main()
