"""Faults injected for real into the running service: real redis-server, `followup serve-dicom`
and `followup worker` subprocesses, dcmtk storescu as the sending PACS and storescp as the PACS
that receives the results. Each test kills or starves a real process and checks what is left:
no acknowledged instance lost, no partial file taken as an instance, every study analysed once,
exactly one set of result objects at the PACS.

The four service tests share one set of processes (module fixture `svc`, one data directory and
one PACS); each one says which processes it kills and restarts, and checks only its own studies.
Studies: the small synthetic residual pair (a full analysis, ~20 s) where an analysis must be
caught running; elsewhere copies of the small `early` follow-up with new UIDs (same patient and
procedure record), which the analysis defers quickly (17 days after the procedure) with an SR and
an Encapsulated PDF for the PACS.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import signal
import subprocess
import time
from collections import Counter
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import generate_uid

from followup.procedure import load_procedure
from followup.service.registry import Instance, Registry, utcnow
from followup.testing.service_harness import FOLLOWUP, free_port, pacs_received, require, storescp, wait_for, wait_port
from workers.tasks import broker_messages

pytestmark = pytest.mark.slow

VISIBILITY_S = 10  # Redis gives a dead worker's task back after this long
SWEEP_S = 2  # the listener's reconciliation sweep runs this often ...
OLDER_THAN_S = 4  # ... for work queued or running longer than this
QUIET_S = 2
SHORT = {"FOLLOWUP_VISIBILITY_TIMEOUT": str(VISIBILITY_S), "FOLLOWUP_RECONCILE_SECONDS": str(SWEEP_S),
         "FOLLOWUP_RECONCILE_OLDER_THAN": str(OLDER_THAN_S)}
TERMINAL = ("complete", "deferred", "failed")
SR, SEG, PDF = "Comprehensive 3D SR Storage", "Segmentation Storage", "Encapsulated PDF Storage"


# --- studies ---------------------------------------------------------------------------------------
def clone_uid(tag: str, uid: str) -> str:
    return generate_uid(entropy_srcs=[tag, uid])


def study_uid_of(folder: Path) -> str:
    return str(pydicom.dcmread(next(folder.glob("*.dcm")), stop_before_pixels=True).StudyInstanceUID)


def clone_study(src: Path, dst: Path, tag: str) -> str:
    """A copy of the study in ``src`` under new Study/Series/SOP Instance UIDs (derived from
    ``tag``): another study of the same patient, on the same day."""
    dst.mkdir(parents=True)
    for f in sorted(src.glob("*.dcm")):
        ds = pydicom.dcmread(f)
        for key in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
            setattr(ds, key, clone_uid(tag, str(getattr(ds, key))))
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.save_as(dst / f"{ds.SOPInstanceUID}.dcm", enforce_file_format=True)
    return study_uid_of(dst)


def pixel_data(path: Path) -> bytes:
    return pydicom.dcmread(path).PixelData


# --- processes ---------------------------------------------------------------------------------------
def alive_in_group(pgid: int) -> list[int]:
    """PIDs of the process group that are still running (zombies not counted)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            pids.append(int(stat.parent.name))
    return pids


def storescu_verbose(folder: Path, port: int) -> subprocess.Popen:
    env = dict(os.environ, TCP_NODELAY="1")
    return subprocess.Popen([require("storescu", "dcmtk"), "-v", "-aet", "PACS", "-aec", "FOLLOWUP", "+sd", "+r",
                             "-xs", "127.0.0.1", str(port), str(folder)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)


def store_responses(lines) -> list[tuple[str, str]]:
    """(SOP Instance UID of the file sent, response text) for each C-STORE response storescu
    printed with -v (our files are named <SOP Instance UID>.dcm)."""
    out, current = [], None
    for line in lines:
        if line.startswith("I: Sending file: "):
            current = Path(line.split(": ", 2)[2].strip()).stem
        elif line.startswith("I: Received Store Response") and current is not None:
            out.append((current, line.split("Response", 1)[1].strip()))
            current = None
    return out


class Service:
    """redis-server (restartable on its port), listener and worker subprocesses, storescp as PACS."""

    def __init__(self, tmp: Path, pacs_port: int, pacs_dir: Path, fault_inject: str = "",
                 settings: dict[str, str] | None = None) -> None:
        """``settings``: the FOLLOWUP_* variables the processes get (default ``SHORT``: timeouts
        shortened so that the tests run quickly; ``{}``: the service's defaults)."""
        self.tmp, self.pacs_dir = tmp, pacs_dir
        self.data = tmp / "data"
        self.redis_port, self.port = free_port(), free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("FOLLOWUP_")}
        env.update(FOLLOWUP_DATA_DIR=str(self.data), FOLLOWUP_REDIS_URL=self.redis_url,
                   **(SHORT if settings is None else settings))
        if fault_inject:
            env["FOLLOWUP_FAULT_INJECT"] = fault_inject
        self.env = env
        self.pacs_port = pacs_port
        self.procs: dict[str, subprocess.Popen] = {}
        self.logs: dict[str, list[Path]] = {}
        self.data.mkdir()
        self._registry: Registry | None = None

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    # processes
    def _start(self, name: str, cmd: list[str]) -> subprocess.Popen:
        assert name not in self.procs or self.procs[name].poll() is not None, f"{name} already running"
        logs = self.logs.setdefault(name, [])
        log = self.tmp / f"{name}-{len(logs) + 1}.log"
        logs.append(log)
        with open(log, "wb") as fh:
            proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=self.env, start_new_session=True)
        self.procs[name] = proc
        return proc

    def running(self, name: str) -> bool:
        return name in self.procs and self.procs[name].poll() is None

    def kill(self, name: str, sig: int = signal.SIGKILL, timeout: float = 30) -> int:
        """Signal the whole process group (a worker: the Celery main process and its pool child)."""
        proc = self.procs[name]
        os.killpg(proc.pid, sig)
        proc.wait(timeout=timeout)
        if sig == signal.SIGKILL:
            wait_for(lambda: not alive_in_group(proc.pid), 10, f"every process of {name} gone", 0.1)
        return proc.pid

    def start_redis(self) -> None:
        self._start("redis", [require("redis-server", "redis-server"), "--port", str(self.redis_port), "--bind",
                              "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(self.tmp)])
        wait_port(self.redis_port)

    def start_listener(self) -> None:
        self._start("listener", [FOLLOWUP, "-v", "serve-dicom", "--ae-title", "FOLLOWUP", "--port", str(self.port),
                                 "--host", "127.0.0.1", "--allow", "PACS", "--destination",
                                 f"PACS@127.0.0.1:{self.pacs_port}", "--quiet-seconds", str(QUIET_S)])
        wait_port(self.port, timeout=60)

    def start_worker(self, wait_ready: bool = True) -> None:
        self._start("worker", [FOLLOWUP, "worker", "--queues", "realtime,batch", "--concurrency", "1"])
        if wait_ready:
            log = self.logs["worker"][-1]
            wait_for(lambda: " ready." in log.read_text(errors="replace"), 90, "the worker to be ready", 0.2)

    def ensure(self, *names: str) -> None:
        for name in names:
            if not self.running(name):
                getattr(self, f"start_{name}")()

    def log(self, name: str) -> str:
        return "".join(p.read_text(errors="replace") for p in self.logs.get(name, []))

    def close(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    # state
    @property
    def registry(self) -> Registry:
        if self._registry is None:
            self._registry = Registry(f"sqlite:///{(self.data / 'followup.db').resolve()}")
        return self._registry

    def add_procedure(self, path: Path) -> None:
        self.registry.add_procedure(load_procedure(path))

    def send(self, folder: Path) -> list[tuple[str, str]]:
        proc = storescu_verbose(folder, self.port)
        out, _ = proc.communicate(timeout=300)
        responses = store_responses(out.splitlines())
        assert proc.returncode == 0, out[-3000:]
        assert len(responses) == len(list(folder.glob("*.dcm"))), out[-3000:]
        assert all(r == "(Success)" for _, r in responses), Counter(r for _, r in responses)
        return responses

    def instances(self, study_uid: str) -> dict[str, str]:
        with self.registry.session() as s:
            return {i.sop_uid: i.path for i in s.query(Instance).filter(Instance.study_uid == study_uid)}

    def finished(self, study_uid: str, timeout: float, n_sent: int):
        """Wait until the study's analyses all ended and ``n_sent`` deliveries are sent; the analyses."""
        def done():
            rows = self.registry.analyses(study_uid)
            if not rows or any(a.status not in TERMINAL for a in rows):
                return None
            sent = [d for a in rows for d in self.registry.deliveries(analysis_id=a.id) if d.status == "sent"]
            return rows if len(sent) >= n_sent else None
        try:
            return wait_for(done, timeout, f"study {study_uid} analysed and its results sent")
        except TimeoutError:
            for name in ("listener", "worker"):
                print(f"--- {name}\n{self.log(name)[-6000:]}")
            raise

    def pacs_objects(self, study_uid: str, *, while_receiving: bool = False) -> Counter:
        """SOP class name -> number of distinct objects of the study the PACS holds.

        ``while_receiving``: polled while storescp may still be writing a file, which is then
        not counted yet; otherwise every file must parse."""
        seen = {str(ds.SOPInstanceUID): ds.SOPClassUID.name
                for _, ds in pacs_received(self.pacs_dir, while_receiving=while_receiving)
                if ds.StudyInstanceUID == study_uid}
        return Counter(seen.values())

    def pacs_overwrites(self) -> int:
        """storescp names files by SOP Instance UID: an object sent twice shows as an overwrite."""
        return (self.tmp / "storescp.log").read_text(errors="replace").count("already exists, overwriting")


# --- fixtures --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def early(synth_pair):
    """The small `early` pair: its follow-up is cloned into new studies of the same patient."""
    return synth_pair("early", 1, "per-phase")


@pytest.fixture(scope="module")
def poison(early):
    """Study UIDs of the two poison studies (their clone tags), known before the worker starts."""
    uid = study_uid_of(early / "followup")
    return {"raise": clone_uid("poison-raise", uid), "kill": clone_uid("poison-kill", uid)}


@pytest.fixture(scope="module")
def svc(tmp_path_factory, early, poison):
    require("redis-server", "redis-server")
    require("storescu", "dcmtk")
    tmp = tmp_path_factory.mktemp("faults")
    with ExitStack() as stack:
        pacs_port, pacs_dir = stack.enter_context(storescp(tmp))
        service = Service(tmp, pacs_port, pacs_dir, f"raise:{poison['raise']},kill:{poison['kill']}")
        stack.callback(service.close)
        service.start_redis()
        service.start_listener()
        service.add_procedure(early / "procedure.json")
        yield service


# --- 1. a worker killed mid-analysis ----------------------------------------------------------------
def test_worker_killed_mid_analysis_is_redelivered_and_sent_once(svc, synth_pair):
    pair = synth_pair("residual", 1, "per-phase")
    fu = study_uid_of(pair / "followup")
    svc.add_procedure(pair / "procedure.json")
    svc.ensure("worker")
    svc.send(pair / "baseline")
    svc.send(pair / "followup")
    running = wait_for(lambda: next((a for a in svc.registry.analyses(fu) if a.status == "running"), None), 120,
                       "the follow-up's analysis to start")
    time.sleep(3)  # inside the registration, which takes ~20 s
    assert svc.registry.analysis(running.id).status == "running", "the analysis ended before the kill"
    pgid = svc.kill("worker")  # SIGKILL to the Celery main process and its pool child
    assert not alive_in_group(pgid)
    left = svc.registry.analysis(running.id)
    assert (left.status, left.attempts) == ("running", 1)  # what a dead worker leaves behind

    svc.start_worker()
    rows = svc.finished(fu, 300, n_sent=3)
    assert [(a.id, a.revision, a.status, a.attempts) for a in rows] == [(running.id, 1, "complete", 2)]
    assert svc.registry.study(fu).state == "complete"
    # The dead worker's message went back to the queue once: by the sweep when the lease (5 s here)
    # expired, or by Redis after the visibility timeout (10 s here), whichever came first. (On a
    # loaded machine the new worker's run can miss a 5 s heartbeat and be taken over too: a line
    # with 2 attempts so far; harmless, the attempts and objects are counted below and above.)
    takeovers = re.findall(rf"reconcile: analysis {running.id} of study \S+ .*\((\d+) attempt\(s\) so far\)",
                           svc.log("listener"))
    assert takeovers.count("1") <= 1, takeovers
    deliveries = svc.registry.deliveries(analysis_id=running.id)
    assert sorted(d.kind for d in deliveries) == ["pdf", "seg", "sr"]
    assert svc.pacs_objects(fu) == Counter({SR: 1, SEG: 1, PDF: 1})
    assert svc.pacs_overwrites() == 0
    assert [p.name for p in (svc.data / "reports" / fu).iterdir()] == [f"{running.algorithm_version}-r1"]

    # The same task delivered once more (as after a kill between sending and acknowledging; with
    # this short visibility timeout Redis also hands a task running longer than 10 s out again):
    # nothing computed, nothing sent again.
    marker = f"'analysis_id': {running.id}, 'status': 'complete'"
    runs = svc.log("worker").count(marker)
    sent = subprocess.run([str(Path(FOLLOWUP).with_name("python")), "-c",
                           "from followup.config import Settings; from workers.tasks import celery_queue; "
                           f"celery_queue(Settings.from_env()).enqueue_analysis({running.id}, 'realtime')"],
                          env=svc.env, capture_output=True, text=True, timeout=120, check=False)
    assert sent.returncode == 0, sent.stderr
    wait_for(lambda: svc.log("worker").count(marker) > runs, 120, "the duplicate task to run")
    assert svc.registry.analysis(running.id).attempts == 2
    assert svc.pacs_objects(fu) == Counter({SR: 1, SEG: 1, PDF: 1}) and svc.pacs_overwrites() == 0


# --- 2. Redis killed and restarted while studies arrive ---------------------------------------------------
def test_redis_killed_while_studies_arrive_nothing_is_forgotten(svc, early, tmp_path):
    a_dir, b_dir = tmp_path / "a", tmp_path / "b"
    a, b = clone_study(early / "followup", a_dir, "redis-a"), clone_study(early / "followup", b_dir, "redis-b")
    if svc.running("worker"):
        svc.kill("worker", signal.SIGTERM, timeout=60)  # no consumer: A's task waits in Redis
    svc.ensure("redis", "listener")
    svc.send(a_dir)
    queued = wait_for(lambda: svc.registry.latest_analysis(a), 60, "study A handed over")
    # Let the sweep look at A's analysis while it is older than its threshold: it must leave it
    # alone, because its message is still in Redis.
    wait_for(lambda: (utcnow() - queued.created_at).total_seconds() > OLDER_THAN_S + 2 * SWEEP_S + 1, 30,
             "A's analysis to age", 0.2)
    assert f"reconcile: analysis {queued.id} " not in svc.log("listener")

    svc.kill("redis")  # SIGKILL, no persistence: A's task is lost with it
    svc.start_worker(wait_ready=False)  # a worker starting while the broker is down waits for it
    svc.send(b_dir)  # the listener keeps receiving
    assert len(svc.instances(b)) == len(list(b_dir.glob("*.dcm")))
    log = svc.logs["listener"][-1]
    wait_for(lambda: log.read_text().count(f"hand-over of study {b} failed") >= 2, 60,
             "two failed hand-overs of B (broker down)")
    assert svc.registry.study(b).state in ("receiving", "stable")  # received, not enqueued
    assert [(x.revision, x.status) for x in svc.registry.analyses(b)] == [(1, "queued")]  # one row, reused
    wait_for(lambda: "no analysis re-sent" in log.read_text(), 30,  # the sweep cannot read the broker:
             "the sweep to give up on the unreadable broker")  # it re-sends nothing blindly

    svc.start_redis()  # same port, empty
    for uid in (a, b):
        rows = svc.finished(uid, 180, n_sent=2)
        assert [(x.revision, x.status, x.attempts) for x in rows] == [(1, "deferred", 1)]
        assert svc.pacs_objects(uid) == Counter({SR: 1, PDF: 1})
    # the lost task, re-sent once. With this test's 5 s lease, a worker slowed by a loaded machine
    # can miss a heartbeat and have its analysis taken over as well (a second "reconcile" line of
    # the other kind): harmless, since every object above was computed and sent once.
    listener_log = svc.log("listener")
    lost = re.findall(rf"reconcile: analysis {queued.id} of study \S+ was \w+ with no message in the broker",
                      listener_log)
    assert len(lost) == 1, listener_log[-3000:]
    assert svc.pacs_overwrites() == 0


# --- 3. the listener killed during a transfer -----------------------------------------------------------
def test_listener_killed_during_transfer(svc, early, tmp_path):
    src = tmp_path / "c"
    c = clone_study(early / "followup", src, "listener")
    n = len(list(src.glob("*.dcm")))
    svc.ensure("redis", "listener", "worker")
    proc = storescu_verbose(src, svc.port)
    lines: list[str] = []
    for line in proc.stdout:
        lines.append(line)
        if sum(1 for _, r in store_responses(lines) if r == "(Success)") >= 60:
            svc.kill("listener")  # SIGKILL mid-transfer
            break
    lines += proc.stdout.readlines()
    proc.wait(timeout=60)
    acked = {sop for sop, r in store_responses(lines) if r == "(Success)"}
    assert proc.returncode != 0 and 60 <= len(acked) < n
    spool = svc.data / "spool"
    left_in_spool = {p.name for p in spool.iterdir()}

    # Every acknowledged instance is registered and complete on disk; nothing else is registered
    # but, at most, the one being answered when the listener died (registered before its answer).
    registered = svc.instances(c)
    assert acked <= set(registered) and len(registered) - len(acked) <= 1
    for sop, path in registered.items():
        assert pixel_data(Path(path)) == pixel_data(src / f"{sop}.dcm")
    for f in (svc.data / "store" / c).rglob("*"):  # nothing partial under a final name
        if f.is_file():
            assert pixel_data(f) == pixel_data(src / f.name)

    # A partial file as a crash mid-write leaves it: restart removes it, nothing registers it.
    data = (src / f"{min({p.stem for p in src.glob('*.dcm')} - set(registered))}.dcm").read_bytes()
    (spool / "crash-left.part").write_bytes(data[: len(data) // 2])
    svc.start_listener()
    assert not list(spool.iterdir()), "the spool is emptied on restart"
    assert f"removed {len(left_in_spool) + 1} partial file(s)" in svc.logs["listener"][-1].read_text()

    responses = svc.send(src)  # the PACS sends the whole study again
    assert len(responses) == n
    registered = svc.instances(c)
    assert set(registered) == {p.stem for p in src.glob("*.dcm")} and len(set(registered.values())) == n
    assert svc.registry.study(c).n_instances == n
    rows = svc.finished(c, 180, n_sent=2)
    assert [(x.revision, x.status, x.attempts) for x in rows] == [(1, "deferred", 1)]
    assert svc.pacs_objects(c) == Counter({SR: 1, PDF: 1}) and svc.pacs_overwrites() == 0


# --- 4. poison studies --------------------------------------------------------------------------------
def test_poison_studies_fail_with_reason_and_do_not_block_the_queue(svc, early, poison, tmp_path):
    """The poison is the explicit test hook FOLLOWUP_FAULT_INJECT (set in `svc`'s environment, read
    into Settings.fault_inject, see followup.service.orchestrator.injected_fault): the analysis of
    the study tagged `raise` raises RuntimeError every time (a bug), that of the study tagged
    `kill` SIGKILLs its own worker process every time (an out-of-memory kill). Unset in production."""
    dirs = {kind: tmp_path / kind for kind in ("raise", "kill", "good")}
    uids = {kind: clone_study(early / "followup", d, f"poison-{kind}") for kind, d in dirs.items()}
    assert uids["raise"] == poison["raise"] and uids["kill"] == poison["kill"]
    svc.ensure("redis", "listener", "worker")
    worker_pid = svc.procs["worker"].pid
    for kind in ("raise", "kill", "good"):  # the good study last, behind both poison studies
        svc.send(dirs[kind])

    good = svc.finished(uids["good"], 240, n_sent=2)
    assert [(x.status, x.attempts) for x in good] == [("deferred", 1)]
    assert svc.pacs_objects(uids["good"]) == Counter({SR: 1, PDF: 1})
    raised = svc.finished(uids["raise"], 240, n_sent=0)
    killed = svc.finished(uids["kill"], 240, n_sent=0)
    assert [(x.status, x.attempts) for x in raised] == [("failed", 3)]
    assert "crashed 3 times: RuntimeError: fault injected" in raised[0].reason
    assert [(x.status, x.attempts) for x in killed] == [("failed", 3)]
    assert "started 3 times and never finished" in killed[0].reason
    for kind in ("raise", "kill"):
        study = svc.registry.study(uids[kind])
        assert study.state == "failed" and study.reason == svc.registry.latest_analysis(uids[kind]).reason
        assert svc.pacs_objects(uids[kind]) == Counter()
    log = svc.log("worker")
    assert log.count(f"raise for study {uids['raise']}") == 3 and log.count(f"kill for study {uids['kill']}") == 3
    assert svc.running("worker") and svc.procs["worker"].pid == worker_pid  # only pool children died


# --- 5. disk full ---------------------------------------------------------------------------------------
def test_full_disk_refuses_instances_with_a700(tmp_path, early):
    """The data directory is a real 2 MiB tmpfs (the follow-up is ~10 MB); the registry lives
    elsewhere, so the failing writes are the instances' own."""
    require("storescu", "dcmtk")
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root: the full-disk check did NOT run")
    data = tmp_path / "data"
    data.mkdir()
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(data)], capture_output=True,
                           text=True, check=False)
    if mount.returncode != 0:
        pytest.skip(f"mount -t tmpfs not permitted here ({mount.stderr.strip()}): the full-disk check did NOT run")
    src = early / "followup"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FOLLOWUP_")}
    env.update(FOLLOWUP_DATA_DIR=str(data), FOLLOWUP_DB_URL=f"sqlite:///{tmp_path / 'registry.db'}",
               FOLLOWUP_RECONCILE_SECONDS="0", FOLLOWUP_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    log = tmp_path / "listener.log"
    try:
        with open(log, "wb") as fh:
            listener = subprocess.Popen([FOLLOWUP, "serve-dicom", "--port", str(port), "--host", "127.0.0.1",
                                         "--allow", "PACS", "--quiet-seconds", "3600"], stdout=fh,
                                        stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            wait_port(port, timeout=60)
            proc = storescu_verbose(src, port)
            out, _ = proc.communicate(timeout=300)
        finally:
            os.killpg(listener.pid, signal.SIGKILL)
            listener.wait()
        # storescu stops at the first refusal (a PACS queues the rest and retries later).
        responses = store_responses(out.splitlines())
        statuses = Counter(r for _, r in responses)
        acked = {sop for sop, r in responses if r == "(Success)"}
        refused = {sop for sop, r in responses if r == "(Refused: OutOfResources)"}  # 0xA700
        assert acked and refused and len(acked) + len(refused) == len(responses), (statuses, out[-2000:])
        assert len(responses) < len(list(src.glob("*.dcm")))
        reg = Registry(f"sqlite:///{tmp_path / 'registry.db'}")
        with reg.session() as s:
            registered = {i.sop_uid: i.path for i in s.query(Instance)}
        assert set(registered) == acked  # nothing unacknowledged is registered
        for sop, path in registered.items():
            assert pixel_data(Path(path)) == pixel_data(src / f"{sop}.dcm")
        stored = [f for f in (data / "store").rglob("*") if f.is_file()]
        assert sorted(f.stem for f in stored) == sorted(acked)  # no partial file left under a final name
        assert not list((data / "spool").iterdir())
        assert "out of resources" in log.read_text()
        print(f"\nfull disk: {len(acked)} instances stored, {len(refused)} refused with 0xA700")
    finally:
        subprocess.run(["umount", "-l", str(data)], check=False)


def test_reconcile_cli_reports_a_broker_it_cannot_reach(tmp_path):
    """`followup reconcile` with Redis down says so and exits 2 instead of claiming success."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FOLLOWUP_")}
    env.update(FOLLOWUP_DATA_DIR=str(tmp_path / "data"), FOLLOWUP_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    (tmp_path / "data").mkdir()
    reg = Registry(f"sqlite:///{tmp_path / 'data' / 'followup.db'}")
    reg.record_instance(study_uid="1.2.3", series_uid="1.2.3.1", sop_uid="1.2.3.1.1",
                        sop_class_uid="1.2.840.10008.5.1.4.1.1.4", path="/x", size=1, patient_id="P",
                        study_date=dt.date(2026, 1, 1), modality="MR", accession_number="", calling_ae="PACS")
    reg.claim_stable_studies(0)
    a = reg.get_or_create_analysis("1.2.3", "v", 1, "realtime")
    reg.update_analysis(a.id, created_at=utcnow() - dt.timedelta(hours=1))
    r = subprocess.run([FOLLOWUP, "reconcile", "--older-than", "60"], env=env, capture_output=True, text=True,
                       timeout=120, check=False)
    assert r.returncode == 2 and "error [broker]" in r.stderr, (r.stdout, r.stderr)
    assert "0 analysis/analyses re-sent" in r.stdout
    assert reg.analysis(a.id).status == "queued"


# --- 6. a whole worker killed, with the default settings -----------------------------------------------
# Nothing shortened but the listener's quiet period: lease 60 s (FOLLOWUP_ANALYSIS_LEASE, heartbeat
# every 15 s), visibility timeout 3600 s, sweep every 5 s (FOLLOWUP_RECONCILE_SECONDS), age 300 s.
DEFAULTS: dict[str, str] = {}
# What the service controls after the kill: the lease (<= 60 s), the sweep (<= 5 s), the new
# worker taking the message and the delivery of the SR (seconds). The re-run's own time is the
# machine's: ~6 s for this pair on an idle machine, 62 s once in CI with the other tests beside it
# (the SR then at the PACS 124 s after the kill), so it is measured and left out of the bound.
TAKEOVER_LIMIT_S = 60 + 5 + 20
ACK_WAIT_S = 15.0  # a finished task's acknowledgement reaches Redis within this (it is seconds at most)


@contextmanager
def default_service(tmp: Path, pair: Path):
    """A service of its own with the default settings: PACS, Redis, listener; the pair's procedure."""
    with ExitStack() as stack:
        pacs_port, pacs_dir = stack.enter_context(storescp(tmp))
        service = Service(tmp, pacs_port, pacs_dir, settings=DEFAULTS)
        stack.callback(service.close)
        service.start_redis()
        service.start_listener()
        service.add_procedure(pair / "procedure.json")
        yield service


def kill_worker_mid_analysis(svc: Service, pair: Path):
    """Send the pair, let the follow-up's analysis run a few seconds, SIGKILL the worker's whole
    process group (Celery main process and pool child: an OOM kill of the container, a lost node).
    Returns the analysis as the dead worker left it and the time of the kill."""
    fu = study_uid_of(pair / "followup")
    svc.ensure("worker")
    svc.send(pair / "baseline")
    svc.send(pair / "followup")
    running = wait_for(lambda: next((a for a in svc.registry.analyses(fu) if a.status == "running"), None), 120,
                       "the follow-up's analysis to start")
    time.sleep(2)  # inside the analysis (~6 s for this pair on an idle machine)
    assert svc.registry.analysis(running.id).status == "running", "the analysis ended before the kill"
    pgid = svc.kill("worker")
    killed_at = time.monotonic()
    assert not alive_in_group(pgid)
    left = svc.registry.analysis(running.id)
    assert (left.status, left.attempts) == ("running", 1)
    # What the issue saw: the task sits in Redis's `unacked` hash, as it would for an hour.
    assert [m.tag is not None for m in broker_messages(svc.redis_url) if m.analysis_id == running.id] == [True]
    return fu, left, killed_at


def assert_analysed_once(svc: Service, fu: str, analysis) -> None:
    """One revision, run twice (the takeover is its second attempt), one SR/SEG/PDF at the PACS,
    nothing sent twice; the dead worker's message was taken over once and is gone from Redis, so
    the broker will not hand it out again after the visibility timeout."""
    rows = svc.finished(fu, 120, n_sent=3)
    assert [(a.id, a.revision, a.status, a.attempts) for a in rows] == [(analysis.id, 1, "complete", 2)]
    assert svc.registry.study(fu).state == "complete"
    assert svc.pacs_objects(fu) == Counter({SR: 1, SEG: 1, PDF: 1}) and svc.pacs_overwrites() == 0
    assert [p.name for p in (svc.data / "reports" / fu).iterdir()] == [f"{analysis.algorithm_version}-r1"]
    listener = svc.log("listener")
    assert listener.count(f"reconcile: analysis {analysis.id} ") == 1, listener[-4000:]
    assert f"reconcile: analysis {analysis.id} of study {fu} was running with no heartbeat" in listener
    assert "task restored" in listener  # the same message, not a second one
    # the new worker acknowledges the message after its task returns, and the delivery it sent may
    # finish first (one run under load: still unacknowledged when the objects were at the PACS); a
    # message left behind for good would be handed out again after the visibility timeout
    wait_for(lambda: not [m for m in broker_messages(svc.redis_url) if m.analysis_id == analysis.id],
             ACK_WAIT_S, f"analysis {analysis.id}'s message acknowledged and gone from Redis", 0.25)


def test_whole_worker_killed_default_settings_sr_at_pacs_one_lease_after_the_kill(tmp_path, synth_pair):
    """Default settings, the whole worker SIGKILLed mid-analysis, a new worker started at once:
    the sweep finds the lease expired (<= 60 s), puts the dead worker's message back in its queue
    (<= 5 s later), the new worker re-runs the analysis: the SR is at the PACS one lease, one sweep
    and the re-run after the kill (about 1 1/2 minutes), not after the hour of the visibility timeout."""
    pair = synth_pair("residual", 1, "per-phase")
    with default_service(tmp_path, pair) as svc:
        fu, analysis, killed_at = kill_worker_mid_analysis(svc, pair)
        svc.start_worker()
        ready_s = time.monotonic() - killed_at
        wait_for(lambda: svc.pacs_objects(fu, while_receiving=True)[SR] >= 1, TAKEOVER_LIMIT_S + 300,
                 "the SR at the PACS", 0.25)
        recovery_s = time.monotonic() - killed_at
        a = svc.registry.analysis(analysis.id)
        assert a.duration_s is not None and a.attempts == 2, (a.status, a.attempts)
        waited_s = recovery_s - a.duration_s
        print(f"\nwhole worker SIGKILLed, default settings: SR at the PACS {recovery_s:.1f} s after the kill "
              f"(new worker ready after {ready_s:.1f} s; the re-run took {a.duration_s:.1f} s, "
              f"{waited_s:.1f} s besides it)")
        assert waited_s <= TAKEOVER_LIMIT_S, (
            f"SR at the PACS {recovery_s:.1f} s after the kill, {waited_s:.1f} s of it not the re-run")
        assert_analysed_once(svc, fu, analysis)


@pytest.mark.slow
@pytest.mark.long_wait
def test_whole_worker_killed_no_worker_for_5_minutes_completes_once_then(tmp_path, synth_pair):
    """As above, but no worker runs for 5 minutes: the sweep puts the message back in its queue
    once (after ~1 minute) and then leaves it waiting there, sweep after sweep; the worker started
    5 minutes later analyses the study once."""
    pair = synth_pair("residual", 1, "per-phase")
    with default_service(tmp_path, pair) as svc:
        fu, analysis, killed_at = kill_worker_mid_analysis(svc, pair)
        wait_for(lambda: f"reconcile: analysis {analysis.id} " in svc.log("listener"), 120,
                 "the sweep to take the analysis over")
        taken_s = time.monotonic() - killed_at
        time.sleep(max(0.0, 300 - (time.monotonic() - killed_at)))
        # Five minutes on: one message, waiting in its queue, and nothing else in Redis for it.
        assert [(m.kind, m.waiting) for m in broker_messages(svc.redis_url) if m.analysis_id == analysis.id] == [
            ("analyze", True)]
        assert svc.registry.analysis(analysis.id).status == "running"
        svc.start_worker()
        wait_for(lambda: svc.pacs_objects(fu, while_receiving=True)[SR] >= 1, 180, "the SR at the PACS", 0.25)
        print(f"\nno worker for 5 minutes: taken over {taken_s:.1f} s after the kill; SR at the PACS "
              f"{time.monotonic() - killed_at:.1f} s after the kill")
        assert_analysed_once(svc, fu, analysis)
