"""Document ingest jobs: an upload accepted with 202 is ingested in the background.

A job row (DuckDB ``jobs``) is written before the 202 answer, with the uploaded file
already complete on disk (``uploads/<job id>/``), so a node that stops mid-job finds the
job on its next start and runs it again (ingest is idempotent: nothing is stored twice).
One worker thread runs jobs in order; progress is kept in memory and written to the row
at most once a second. When a job stores new incidents, each machine that got some is
announced on the push bus (its newest new incident, with the most similar past one).
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from rae_edge.errors import NotFoundError
from rae_edge.store.duck import DuckStore
from rae_sync.domain import Incident, new_id

if TYPE_CHECKING:
    from rae_edge.ingest.pipeline import IngestTarget
    from rae_edge.ingest.result import IngestResult, Progress

log = logging.getLogger(__name__)

PROGRESS_EVERY_S = 1.0
MAX_ANNOUNCED_MACHINES = 100
MAX_REJECTIONS = 200


class DocumentJobs:
    """The node's ingest job queue and its one worker thread."""

    def __init__(self, duck: DuckStore, upload_dir: Path, *,
                 target: Callable[[str], IngestTarget],
                 announce: Callable[[Incident, int], object]) -> None:
        self.duck = duck
        self.upload_dir = upload_dir
        self._target = target  # tenant -> where its files are stored (a node may serve several)
        self._announce_one = announce  # (newest incident, count) -> pushed to its machine
        self._queue: queue.Queue[tuple[str, str]] = queue.Queue()
        self._progress: dict[tuple[str, str], dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._worker: threading.Thread | None = None
        self._resumed = False

    # -- submitting --------------------------------------------------------------------
    def new_upload_dir(self) -> tuple[str, Path]:
        """A job id and the folder its upload goes into (created)."""
        job_id = new_id("job")
        folder = self.upload_dir / job_id
        folder.mkdir(parents=True, exist_ok=True)
        return job_id, folder

    def submit(self, tenant_id: str, job_id: str, path: Path, *, kind: str,
               machine_id: str | None, filename: str) -> dict[str, Any]:
        """Records a job for a complete file on disk and queues it."""
        params = {"path": str(path), "kind": kind, "machine_id": machine_id,
                  "filename": filename}
        with self.duck.transaction() as cur:
            cur.execute("INSERT INTO jobs (tenant_id, id, kind, status, params) "
                        "VALUES (?, ?, 'ingest', 'queued', ?)",
                        [tenant_id, job_id, json.dumps(params)])
        self._start()
        self._queue.put((tenant_id, job_id))
        return self.get(tenant_id, job_id)

    def resume(self) -> int:
        """Queues the jobs a previous run left queued or running; returns how many."""
        with self._lock:
            if self._resumed:
                return 0
            self._resumed = True
        rows = self.duck.query(
            "SELECT tenant_id, id FROM jobs WHERE status IN ('queued', 'running') "
            "ORDER BY created_at, id")
        if rows:
            self._start()
            for tenant, job in rows:
                log.info("resuming ingest job %s left by a previous run", job)
                self._queue.put((str(tenant), str(job)))
        return len(rows)

    # -- reading -------------------------------------------------------------------------
    def get(self, tenant_id: str, job_id: str) -> dict[str, Any]:
        rows = self.duck.query_dicts(
            "SELECT id, kind, status, params, progress, result, error, created_at, updated_at "
            "FROM jobs WHERE tenant_id = ? AND id = ?", [tenant_id, job_id])
        if not rows:
            raise NotFoundError(f"no job {job_id!r} on this node")
        r = rows[0]
        params = json.loads(r["params"])
        live = self._progress.get((tenant_id, job_id))
        progress = live if live is not None else (
            json.loads(r["progress"]) if r["progress"] else None)
        return {"id": r["id"], "kind": r["kind"], "status": r["status"],
                "filename": params.get("filename"), "document_kind": params.get("kind"),
                "machine_id": params.get("machine_id"), "progress": progress,
                "result": json.loads(r["result"]) if r["result"] else None,
                "error": r["error"], "created_at": r["created_at"],
                "updated_at": r["updated_at"]}

    def wait(self, tenant_id: str, job_id: str, timeout: float = 60.0) -> dict[str, Any]:
        """Blocks until the job is done or failed (for tests and scripts)."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.get(tenant_id, job_id)
            if job["status"] in ("done", "failed") or time.monotonic() > deadline:
                return job
            time.sleep(0.05)

    # -- running -------------------------------------------------------------------------
    def _start(self) -> None:
        with self._lock:
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._run, name="ingest-jobs",
                                                daemon=True)
                self._worker.start()

    def _run(self) -> None:
        while True:
            tenant, job = self._queue.get()
            try:
                self._one(tenant, job)
            except Exception as exc:  # the worker must survive any one job
                log.exception("ingest job %s failed", job)
                self._set(tenant, job, status="failed", error=f"{type(exc).__name__}: {exc}")
            finally:
                self._progress.pop((tenant, job), None)

    def _set(self, tenant: str, job: str, **cols: Any) -> None:
        sets = ", ".join(f"{k} = ?" for k in cols)
        with self.duck.transaction() as cur:
            cur.execute(f"UPDATE jobs SET {sets}, updated_at = ? WHERE tenant_id = ? AND id = ?",
                        [*cols.values(), datetime.now(UTC), tenant, job])

    def _one(self, tenant: str, job: str) -> None:
        from rae_edge.ingest import ingest_paths
        from rae_edge.ingest.pipeline import Kind

        rows = self.duck.query(
            "SELECT params, status FROM jobs WHERE tenant_id = ? AND id = ?", [tenant, job])
        if not rows or rows[0][1] in ("done", "failed"):
            return
        params = json.loads(rows[0][0])
        path = Path(params["path"])
        if not path.exists():
            self._set(tenant, job, status="failed",
                      error=f"the uploaded file is gone from {path}")
            return
        self._set(tenant, job, status="running")
        started = datetime.now(UTC)
        last_flush = [0.0]

        def progress(p: Progress) -> None:
            state = {**asdict(p), "path": params["filename"]}
            self._progress[(tenant, job)] = state
            now = time.monotonic()
            if now - last_flush[0] >= PROGRESS_EVERY_S:
                last_flush[0] = now
                self._set(tenant, job, progress=json.dumps(state))

        result = ingest_paths(self._target(tenant), [path], kind=cast("Kind", params["kind"]),
                              machine_id=params["machine_id"], progress=progress,
                              titles={path: params["filename"]})
        summary = _result_json(result, path, params["filename"])
        if result.added:  # before "done": a finished job has told its tablets
            self._announce(tenant, started)
        self._set(tenant, job, status="done", result=json.dumps(summary),
                  progress=json.dumps(self._progress.get((tenant, job))))

    def _announce(self, tenant: str, since: datetime) -> None:
        """One push per machine that got new incidents: its newest, with the similar one."""
        rows = self.duck.query_dicts(
            """SELECT tenant_id, id, machine_id, occurred_at, error_code, symptom, action,
                      source, content_hash FROM incidents
               WHERE tenant_id = ? AND ingested_at >= ?
               QUALIFY row_number() OVER (PARTITION BY machine_id
                                          ORDER BY occurred_at DESC, id) = 1
               ORDER BY occurred_at DESC LIMIT ?""",
            [tenant, since, MAX_ANNOUNCED_MACHINES])
        counts = dict(self.duck.query(
            "SELECT machine_id, count(*) FROM incidents WHERE tenant_id = ? AND "
            "ingested_at >= ? GROUP BY machine_id", [tenant, since]))
        for r in rows:
            inc = Incident(**r)
            try:
                self._announce_one(inc, int(counts.get(inc.machine_id, 1)))
            except Exception:
                log.exception("push of new incident %s failed", inc.id)


def _result_json(result: IngestResult, path: Path, filename: str) -> dict[str, Any]:
    """The result with the upload's on-disk path replaced by its original file name."""
    text = json.dumps({**result.to_dict(), "summary": result.summary()})
    out: dict[str, Any] = json.loads(text.replace(json.dumps(str(path))[1:-1],
                                                  json.dumps(filename)[1:-1]))
    out["rejections"] = out.pop("rejected")[:MAX_REJECTIONS]
    out["rejected"] = len(result.rejected)
    return out
