"""Uploads across every multipart endpoint: a file name that climbs out of the data folder
never becomes a path outside it, and a file that is not what its endpoint takes is refused."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import pytest

from tests.security.conftest import ACME_MACHINE, SecureNode, silent_wav
from tests.security.openapi_calls import Filler, operations


def _multipart_calls(sn: SecureNode) -> list:  # type: ignore[type-arg]
    spec = sn.client.get("/api/v1/schema/openapi.json").json()
    filler = Filler(spec, {"machine_id": ACME_MACHINE, "kind": "manual",
                           "target_id": sn.acme_ids["incident"],
                           "_any_id": sn.acme_ids["incident"]}, silent_wav())
    calls = [filler.call(m, p, op) for m, p, op in operations(spec)]
    return [c for c in calls if c.files]


def _files_named(root: Path, marker: str) -> list[Path]:
    found = []
    for dirpath, _dirs, files in os.walk(root):
        found += [Path(dirpath) / f for f in files if marker in f]
    return found


def test_path_traversal_in_upload_names_is_refused(secure_node: SecureNode,
                                                    tmp_path: Path) -> None:
    sn = secure_node
    calls = _multipart_calls(sn)
    if not calls:
        pytest.skip("the app has no upload endpoint yet")
    data_dir = sn.node.data_dir
    tried = 0
    for c in calls:
        for field, (name, content, ctype) in list(c.files.items()):
            suffix = Path(name).suffix
            for hostile in ("../../../{m}" + suffix, "..\\..\\{m}" + suffix, "/tmp/{m}" + suffix,
                            "a/../../{m}" + suffix, "%2e%2e%2f{m}" + suffix):
                marker = f"escape_{uuid.uuid4().hex}"
                files = {**c.files, field: (hostile.format(m=marker), content, ctype)}
                r = sn.client.request(c.method, c.url, files=files, data=c.data,
                                      headers=sn.headers("acme_admin"))
                tried += 1
                assert r.status_code < 500, (c.key, hostile, r.status_code, r.text)
                escaped = [p for p in _files_named(tmp_path, marker) + _files_named(
                    Path("/tmp"), marker) if data_dir not in p.parents]
                assert not escaped, (c.key, hostile, escaped)
                inside = _files_named(data_dir, marker)
                assert all(".." not in p.relative_to(data_dir).parts for p in inside)
    print(f"\npath traversal: {tried} hostile upload names on {len(calls)} endpoints, "
          "0 files outside the data folder")


def test_uploads_of_the_wrong_type_are_refused(secure_node: SecureNode) -> None:
    sn = secure_node
    calls = _multipart_calls(sn)
    if not calls:
        pytest.skip("the app has no upload endpoint yet")
    junk = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00" + os.urandom(2048)  # a Windows executable
    refused = []
    for c in calls:
        for field, (name, _content, _ctype) in list(c.files.items()):
            files = {**c.files, field: (Path(name).stem + ".exe", junk,
                                        "application/x-msdownload")}
            r = sn.client.request(c.method, c.url, files=files, data=c.data,
                                  headers=sn.headers("acme_admin"))
            if 400 <= r.status_code < 500:
                refused.append(f"{c.key}: {r.status_code}")
                continue
            # An accepted upload must be a job that then refuses the file, naming why.
            assert r.status_code == 202 and r.json().get("kind") == "ingest", (c.key, r.text)
            job = _wait_job(sn, r.json()["id"])
            # (the file's content is checked, e.g. a PDF header: a misnamed file is rejected)
            result = job.get("result") or {}
            if job["status"] == "failed":
                assert job["error"], job
                reason = str(job["error"])
            else:
                assert job["status"] == "done" and result.get("added") == 0, (c.key, job)
                assert result.get("rejections"), job
                reason = str(result["rejections"][0]["reason"])
            refused.append(f"{c.key}: job rejected it ({reason[:60]})")
    assert len(refused) == sum(len(c.files) for c in calls)
    print(f"\nupload type checks: {len(refused)} wrong-type uploads refused: {refused}")


def _wait_job(sn: SecureNode, job_id: str) -> dict:  # type: ignore[type-arg]
    deadline = time.monotonic() + 60
    while True:
        job = sn.client.get(f"/api/v1/jobs/{job_id}", headers=sn.headers("acme_admin")).json()
        if job["status"] in ("done", "failed") or time.monotonic() > deadline:
            return job  # type: ignore[no-any-return]
        time.sleep(0.2)
