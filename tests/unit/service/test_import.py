"""``followup import``: files through the listener's own handler (stored, duplicate, refused with
its reason), sub-folders only with ``--recursive``, the studies that received images queued as one
batch on the ``batch`` queue (or not, with ``--no-analyse``). Real registry and store in tmp; the
command as a user runs it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from followup.service.importer import files_in, import_folder, queue_imported
from followup.service.registry import Registry
from followup.service.store import Store
from followup.service.work_queue import RecordingQueue
from followup.testing.instances import encode, mr

EXE = str(Path(sys.executable).with_name("followup"))


def make_folder(root: Path) -> dict[str, str]:
    """Two studies at the top, one more in a sub-folder, a JSON file, a file that is no DICOM, an
    image without pixel data."""
    root.mkdir()
    top_a, top_b, deep = mr(patient="P-IMP-1"), mr(patient="P-IMP-2"), mr(patient="P-IMP-3")
    (root / "a.dcm").write_bytes(encode(top_a))
    (root / "b.dcm").write_bytes(encode(top_b))
    (root / "sub").mkdir()
    (root / "sub" / "c.dcm").write_bytes(encode(deep))
    (root / "procedure.json").write_text("{}")
    (root / "notes.txt").write_text("not DICOM")
    empty = mr(patient="P-IMP-1", study_uid=str(top_a.StudyInstanceUID))
    del empty.PixelData
    (root / "sub" / "nopixels.dcm").write_bytes(encode(empty))
    return {"a": str(top_a.StudyInstanceUID), "b": str(top_b.StudyInstanceUID), "deep": str(deep.StudyInstanceUID)}


def test_import_recursive_or_not_duplicates_and_reasons(tmp_path):
    uids = make_folder(tmp_path / "in")
    reg, store = Registry(f"sqlite:///{tmp_path}/r.db"), Store(tmp_path / "data")
    assert [p.name for p in files_in(tmp_path / "in", recursive=False)] == ["a.dcm", "b.dcm", "notes.txt"]
    flat = import_folder(tmp_path / "in", store, reg, recursive=False)
    assert (flat.stored, flat.duplicates, flat.refused) == (2, 0, 1)
    assert flat.new_images == {uids["a"], uids["b"]}
    (reason,) = flat.reasons()
    assert flat.quarantined[0].startswith("notes.txt: ") and reason
    deep = import_folder(tmp_path / "in", store, reg, recursive=True)
    assert (deep.stored, deep.duplicates, deep.refused) == (1, 2, 2)  # the sub-folder's image is new
    assert deep.new_images == {uids["deep"]} and deep.studies == set(uids.values())
    assert sum(deep.reasons().values()) == 2 and len(list((tmp_path / "data" / "quarantine").glob("*.json"))) == 3
    assert {s.study_uid for s in reg.studies()} == set(uids.values())


def test_imported_studies_queued_as_one_batch_on_the_batch_queue(tmp_path):
    uids = make_folder(tmp_path / "in")
    reg, store = Registry(f"sqlite:///{tmp_path}/r.db"), Store(tmp_path / "data")
    res = import_folder(tmp_path / "in", store, reg)
    reg.claim_stable_studies(0)  # the listener's monitor got there first for every study ...
    reg.set_study(uids["b"], state="receiving")  # ... but this one
    queue = RecordingQueue(registry=reg)
    batch, failed = queue_imported(reg, queue, res.new_images, reason="import of 3 studies")
    assert batch is not None and failed == [] and batch.total == 1 and batch.reason == "import of 3 studies"
    assert queue.studies == [uids["b"]] and [q for _a, q in queue.analyses] == ["batch"]
    (a,) = reg.analyses(batch_id=batch.id)
    assert a.study_uid == uids["b"] and a.queue == "batch" and a.revision == 1
    st = reg.study(uids["b"])
    assert st is not None and st.state == "stable" and st.enqueued_at is not None
    assert queue_imported(reg, queue, res.new_images) == (None, [])  # nothing receiving any more


def test_queue_failures_are_reported_not_raised(tmp_path):
    uids = make_folder(tmp_path / "in")
    reg, store = Registry(f"sqlite:///{tmp_path}/r.db"), Store(tmp_path / "data")
    res = import_folder(tmp_path / "in", store, reg)

    class Down(RecordingQueue):
        def enqueue_study(self, study_uid, queue="realtime", batch_id=None):
            raise ConnectionError("broker down")

    batch, failed = queue_imported(reg, Down(registry=reg), res.new_images)
    assert batch is not None and sorted(failed) == sorted(uids.values())


def run(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run([EXE, *map(str, args)], capture_output=True, text=True, timeout=120)


def test_import_command(tmp_path):
    make_folder(tmp_path / "in")
    data = tmp_path / "data"
    res = run("--data-dir", data, "import", tmp_path / "in", "--no-analyse")
    assert res.returncode == 0, res.stderr
    assert "3 files: 2 stored, 0 duplicate (already stored), 1 refused, 0 failed; 2 study/studies" in res.stdout
    assert "not queued for analysis (--no-analyse)" in res.stdout and "Traceback" not in res.stderr
    assert "  1 x " in res.stdout and "quarantine" in res.stdout
    res = run("--data-dir", data, "import", tmp_path / "in", "--recursive", "--no-analyse")
    assert res.returncode == 0, res.stderr
    assert "5 files: 1 stored, 2 duplicate (already stored), 2 refused" in res.stdout
    assert "P-IMP" not in res.stdout + res.stderr  # no patient identifier in the summary
    (tmp_path / "empty" / "deeper").mkdir(parents=True)
    res = run("--data-dir", data, "import", tmp_path / "empty")
    assert res.returncode == 2 and "error [import]: no file to import" in res.stderr and "--recursive" in res.stderr
    assert run("--data-dir", data, "import", tmp_path / "nowhere").returncode == 2
