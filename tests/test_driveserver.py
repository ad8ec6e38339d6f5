"""The Drive stand-in, proven with the real google-api-python-client (built by `build_service`).

These tests also pin down the client-side recipes the product relies on: the service built from
the shipped discovery document with its root URL replaced, the chunk loop that retries
`next_chunk(num_retries=0)` itself, and resuming a saved session URI from a fresh request.
"""

from __future__ import annotations

import hashlib
import http.client
import io
import json
import os
import socket
import time
from pathlib import Path

import pytest

pytest.importorskip("googleapiclient")

from googleapiclient.discovery import build_from_document  # noqa: E402
from googleapiclient.discovery_cache import get_static_doc  # noqa: E402
from googleapiclient.errors import HttpError  # noqa: E402
from googleapiclient.http import (  # noqa: E402
    HttpRequest,
    MediaFileUpload,
    MediaInMemoryUpload,
    MediaIoBaseDownload,
)

from tests.driveserver import (  # noqa: E402
    FOLDER_MIME,
    DriveStandIn,
    build_http_for,
    build_service,
)

TOKEN = "ya29.stand-in-token"
CHUNK = 256 * 1024
RETRYABLE = {429, 500, 502, 503, 504}


@pytest.fixture
def drive():
    server = DriveStandIn(token=TOKEN, lifetime=60, io_timeout=5)
    yield server
    server.close()


@pytest.fixture
def service(drive: DriveStandIn):
    return build_service(drive.url, TOKEN)


@pytest.fixture(scope="module")
def blob(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("drive") / "weights.bin"
    path.write_bytes(os.urandom(1_500_000))  # 5 full 256 KiB chunks and a short last one
    return path


def digests(path: Path) -> dict[str, str]:
    data = path.read_bytes()
    return {
        "size": str(len(data)),
        "md5Checksum": hashlib.md5(data).hexdigest(),
        "sha256Checksum": hashlib.sha256(data).hexdigest(),
    }


FIELDS = "id,name,size,md5Checksum,sha256Checksum,mimeType,parents"


def media(path: Path) -> MediaFileUpload:
    return MediaFileUpload(
        str(path), mimetype="application/octet-stream", chunksize=CHUNK, resumable=True
    )


def start_upload(service, path: Path, parent: str = "root", name: str | None = None):
    body = {"name": name or path.name, "parents": [parent]}
    return service.files().create(body=body, media_body=media(path), fields=FIELDS)


def drive_chunks(request, *, max_failures: int = 5) -> tuple[dict, list[Exception]]:
    """The product's loop: `next_chunk(num_retries=0)` retried by us on 5xx/429 and OSError.

    After either failure the request is left in its error state, so the next `next_chunk` first
    asks the server (`PUT <session>`, `Content-Range: bytes */TOTAL`) and resends from the
    `Range` it answers; nothing has to be reset by hand."""
    failures: list[Exception] = []
    response = None
    while response is None:
        try:
            _, response = request.next_chunk(num_retries=0)
        except HttpError as e:
            if e.resp.status not in RETRYABLE or len(failures) >= max_failures:
                raise
            failures.append(e)
        except OSError as e:  # ConnectionResetError, BrokenPipeError, TimeoutError, ...
            if len(failures) >= max_failures:
                raise
            failures.append(e)
    return response, failures


def chunk_ranges(drive: DriveStandIn) -> list[str | None]:
    return [r.content_range for r in drive.requests if r.kind == "chunk"]


# --------------------------------------------------------------------------- service


def test_build_service_sends_api_calls_and_uploads_to_the_stand_in(
    drive: DriveStandIn, service, blob: Path
) -> None:
    request = start_upload(service, blob)
    assert request.uri.startswith(drive.url + "/upload/drive/v3/files?")
    assert "uploadType=resumable" in request.uri
    assert service.files().list(fields="files(id)").execute() == {"files": []}


def test_api_endpoint_alone_does_not_redirect_media_uploads(drive: DriveStandIn, blob) -> None:
    """Why the product must rewrite rootUrl: with only `api_endpoint`, the upload URI keeps
    https (the client swaps only host:port into "<rootUrl>upload/...")."""
    service = build_from_document(
        get_static_doc("drive", "v3"),
        http=build_http_for(TOKEN),
        client_options={"api_endpoint": drive.url + "/drive/v3/"},
    )
    assert service.files().list().uri.startswith(drive.url + "/drive/v3/files")
    upload = service.files().create(body={"name": "x"}, media_body=media(blob))
    assert upload.uri.startswith("https://127.0.0.1:")


# --------------------------------------------------------------------------- uploads


def test_folder_and_chunked_upload_verify(drive: DriveStandIn, service, blob: Path) -> None:
    folder = (
        service.files()
        .create(body={"name": "llama-7b", "mimeType": FOLDER_MIME}, fields="id,mimeType")
        .execute()
    )
    assert folder["mimeType"] == FOLDER_MIME
    request = start_upload(service, blob, folder["id"])
    result, failures = drive_chunks(request)
    assert failures == []
    assert {k: result[k] for k in ("size", "md5Checksum", "sha256Checksum")} == digests(blob)
    assert result["parents"] == [folder["id"]]
    assert result["name"] == blob.name
    size = blob.stat().st_size
    assert chunk_ranges(drive) == [
        f"bytes {a}-{min(a + CHUNK, size) - 1}/{size}" for a in range(0, size, CHUNK)
    ]
    assert drive.bytes_received == drive.wire_bytes == size
    assert drive.received_by_file[result["id"]] == size == drive.received_for(blob.name)
    assert drive.content(result["id"]) == blob.read_bytes()
    start = drive.requests_of("initiate")[0]
    assert start.headers["x-upload-content-length"] == str(size)
    assert start.headers["authorization"] == f"Bearer {TOKEN}"


@pytest.mark.parametrize("status", [503, 500, 429])
def test_failed_chunk_is_retried_from_the_servers_range(
    drive: DriveStandIn, service, blob: Path, status: int
) -> None:
    request = start_upload(service, blob)
    request.next_chunk(num_retries=0)
    drive.fail_next("chunk", status)
    result, failures = drive_chunks(request)
    assert [f.resp.status for f in failures] == [status]
    assert {k: result[k] for k in ("size", "md5Checksum", "sha256Checksum")} == digests(blob)
    kinds = [(r.kind, r.status) for r in drive.requests if r.kind in ("chunk", "status")]
    assert kinds[1:4] == [("chunk", status), ("status", 308), ("chunk", 308)]
    assert drive.bytes_received == blob.stat().st_size
    assert drive.wire_bytes == blob.stat().st_size + CHUNK  # the failed chunk, sent twice


def test_failed_status_query_is_retried_too(drive: DriveStandIn, service, blob: Path) -> None:
    request = start_upload(service, blob)
    drive.fail_next("chunk", 503)
    drive.fail_next("status", 503, times=2)
    result, failures = drive_chunks(request)
    assert [f.resp.status for f in failures] == [503, 503, 503]
    assert result["md5Checksum"] == digests(blob)["md5Checksum"]
    statuses = [r.status for r in drive.requests if r.kind == "status"]
    assert statuses == [503, 503, 308]


def test_dropped_connection_mid_chunk_is_retried(drive: DriveStandIn, service, blob) -> None:
    request = start_upload(service, blob)
    request.next_chunk(num_retries=0)
    drive.drop_next_chunk(after_bytes=100_000)
    result, failures = drive_chunks(request)
    assert len(failures) == 1
    # A reset after the client sent the chunk: ConnectionResetError; while still sending it:
    # BrokenPipeError (or ConnectionResetError). Never RemoteDisconnected (the server resets).
    assert isinstance(failures[0], ConnectionResetError | BrokenPipeError), failures
    assert {k: result[k] for k in ("size", "md5Checksum", "sha256Checksum")} == digests(blob)
    dropped = [r for r in drive.requests if r.kind == "chunk" and r.status is None]
    assert len(dropped) == 1 and dropped[0].body_bytes == 100_000
    assert drive.bytes_received == blob.stat().st_size  # the dropped part was not kept


def test_dropped_chunk_with_partly_persisted_data(drive: DriveStandIn, service, blob) -> None:
    request = start_upload(service, blob)
    request.next_chunk(num_retries=0)
    drive.drop_next_chunk(after_bytes=100_000, keep=True)
    result, failures = drive_chunks(request)
    assert len(failures) == 1
    assert result["sha256Checksum"] == digests(blob)["sha256Checksum"]
    size = blob.stat().st_size
    # The client resumed at the unaligned offset the server reported.
    assert f"bytes {CHUNK + 100_000}-{2 * CHUNK + 100_000 - 1}/{size}" in chunk_ranges(drive)
    assert drive.bytes_received == size


def test_lost_answer_to_the_final_chunk(drive: DriveStandIn, service, blob: Path) -> None:
    """The server kept the last chunk but the answer never came: the status query that the
    next `next_chunk` sends answers 200 with the file, and nothing is sent again."""
    request = start_upload(service, blob)
    size = blob.stat().st_size
    for _ in range(size // CHUNK):
        request.next_chunk(num_retries=0)
    drive.drop_next_chunk(after_bytes=CHUNK, keep=True)
    result, failures = drive_chunks(request)
    assert len(failures) == 1
    assert {k: result[k] for k in ("size", "md5Checksum", "sha256Checksum")} == digests(blob)
    assert drive.wire_bytes == size
    assert [r.kind for r in drive.requests][-1] == "status"


def test_replacing_content_with_a_resumable_update(drive: DriveStandIn, service, blob) -> None:
    first = service.files().create(body={"name": "w.bin"}, fields="id,size").execute()
    assert first["size"] == "0"  # metadata-only create of a non-folder: an empty file
    request = service.files().update(fileId=first["id"], media_body=media(blob), fields=FIELDS)
    assert request.method == "PATCH"
    result, _ = drive_chunks(request)
    assert result["id"] == first["id"]
    assert {k: result[k] for k in ("size", "md5Checksum", "sha256Checksum")} == digests(blob)


def test_empty_file_one_request_uploads_and_long_queries(drive: DriveStandIn, service, tmp_path):
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    result, _ = drive_chunks(start_upload(service, empty))  # no Content-Range at all
    assert (result["size"], result["md5Checksum"]) == ("0", hashlib.md5(b"").hexdigest())
    data = os.urandom(5000)
    one = MediaInMemoryUpload(data, mimetype="application/x-foo", resumable=False)
    made = service.files().create(body={"name": "mp"}, media_body=one, fields=FIELDS).execute()
    assert (made["mimeType"], made["md5Checksum"]) == (
        "application/x-foo",
        hashlib.md5(data).hexdigest(),
    )
    assert drive.requests[-1].query["uploadType"] == "multipart"
    # A URI over 2048 characters turns into POST + X-HTTP-Method-Override: GET.
    q = " or ".join(f"name = 'n{i:04d}'" for i in range(150)) + " or name = 'mp'"
    assert service.files().list(q=q, fields="files(name)").execute() == {"files": [{"name": "mp"}]}
    assert drive.requests[-1].method == "POST" and drive.requests[-1].kind == "list"


# --------------------------------------------------------------------------- resuming


def _abandon_after_two_chunks(service, blob: Path) -> str:
    """'Process 1': starts the upload, sends two chunks and saves the session URI."""
    request = start_upload(service, blob)
    request.next_chunk(num_retries=0)
    request.next_chunk(num_retries=0)
    assert request.resumable_progress == 2 * CHUNK
    return request.resumable_uri


def test_from_json_drops_the_session_uri(drive: DriveStandIn, service, blob: Path) -> None:
    request = start_upload(service, blob)
    request.next_chunk(num_retries=0)
    saved = json.loads(request.to_json())
    assert saved["resumable_uri"] == request.resumable_uri  # to_json keeps it ...
    again = HttpRequest.from_json(request.to_json(), request.http, request.postproc)
    assert again.resumable_uri is None and again.resumable_progress == 0  # ... from_json not


@pytest.mark.parametrize("recipe", ["status-query", "error-state", "uri-only"])
def test_resuming_a_saved_session_uri_in_a_new_process(
    drive: DriveStandIn, blob: Path, recipe: str
) -> None:
    uri = _abandon_after_two_chunks(build_service(drive.url, TOKEN), blob)
    sent_before = drive.wire_bytes

    # 'Process 2': a new service, a new MediaFileUpload (same file, same chunk size) and a new
    # request; only the saved session URI carries over.
    service = build_service(drive.url, TOKEN)
    request = start_upload(service, blob)
    request.resumable_uri = uri
    result = None
    if recipe == "status-query":  # public attributes only: ask, then set resumable_progress
        size = request.resumable.size()
        resp, content = request.http.request(
            uri, "PUT", headers={"Content-Range": f"bytes */{size}", "Content-Length": "0"}
        )
        if resp.status in (200, 201):
            result = json.loads(content)  # it had completed already
        else:
            assert resp.status == 308, resp.status  # (404: session gone, start over)
            request.resumable_progress = (
                int(resp["range"].rsplit("-", 1)[1]) + 1 if "range" in resp else 0
            )
    elif recipe == "error-state":  # private flag: next_chunk does the status query itself
        request._in_error_state = True
    # "uri-only": the first next_chunk resends bytes 0-262143; the server keeps only contiguous
    # data, answers 308 with its Range, and the client continues from there.
    if result is None:
        result, failures = drive_chunks(request)
        assert failures == []
    assert {k: result[k] for k in ("size", "md5Checksum", "sha256Checksum")} == digests(blob)
    size = blob.stat().st_size
    sent = drive.wire_bytes - sent_before
    assert sent < size
    assert sent == size - 2 * CHUNK + (CHUNK if recipe == "uri-only" else 0)
    assert drive.bytes_received == size
    assert len(drive.find(blob.name)) == 1


def test_status_query_of_a_finished_session_answers_the_file(
    drive: DriveStandIn, service, blob: Path
) -> None:
    request = start_upload(service, blob)
    result, _ = drive_chunks(request)
    http = build_http_for(TOKEN)
    resp, content = http.request(
        request.resumable_uri,
        "PUT",
        headers={"Content-Range": f"bytes */{result['size']}", "Content-Length": "0"},
    )
    assert resp.status == 200
    assert json.loads(content) == result  # with the fields of the initiating request


def test_expired_session_is_404(drive: DriveStandIn, service, blob: Path) -> None:
    request = start_upload(service, blob)
    request.next_chunk(num_retries=0)
    drive.expire_sessions()
    with pytest.raises(HttpError) as info:
        request.next_chunk(num_retries=0)
    assert info.value.resp.status == 404


def test_a_fresh_session_reports_no_range(drive: DriveStandIn, service, blob: Path) -> None:
    request = start_upload(service, blob)
    drive.fail_next("chunk", 503)
    with pytest.raises(HttpError):
        request.next_chunk(num_retries=0)
    request.next_chunk(num_retries=0)
    status = [r for r in drive.requests if r.kind == "status"][0]
    assert status.status == 308
    assert request.resumable_progress == CHUNK


# --------------------------------------------------------------------------- listing, metadata


def _upload(service, path: Path, parent: str = "root", name: str | None = None) -> dict:
    return drive_chunks(start_upload(service, path, parent, name))[0]


def test_list_by_name_and_parent_with_fields(drive: DriveStandIn, service, blob: Path) -> None:
    folder = drive.add_file("models")
    other = drive.add_file("other")
    uploaded = _upload(service, blob, folder)
    _upload(service, blob, other)
    q = f"name = '{blob.name}' and '{folder}' in parents and trashed = false"
    listing = (
        service.files()
        .list(
            q=q,
            spaces="drive",
            fields=f"nextPageToken,files({FIELDS})",
            pageSize=10,
            supportsAllDrives=True,
            includeItemsFromAllDrives=True,
        )
        .execute()
    )
    assert listing == {"files": [uploaded]}
    assert {k: listing["files"][0][k] for k in digests(blob)} == digests(blob)

    folders = (
        service.files()
        .list(
            q=f"name = 'models' and mimeType = '{FOLDER_MIME}' and 'root' in parents "
            "and trashed = false",
            fields="files(id,name)",
        )
        .execute()
    )
    assert folders == {"files": [{"id": folder, "name": "models"}]}
    assert (
        service.files().list(q=f"name = 'models' and '{other}' in parents").execute()["files"] == []
    )


def test_default_fields_are_kind_id_name_mimetype(drive: DriveStandIn, service, blob) -> None:
    uploaded = _upload(service, blob)
    listing = service.files().list(q=f"name = '{blob.name}'").execute()
    assert listing == {
        "kind": "drive#fileList",
        "incompleteSearch": False,
        "files": [
            {
                "kind": "drive#file",
                "id": uploaded["id"],
                "name": blob.name,
                "mimeType": "application/octet-stream",
            }
        ],
    }
    got = service.files().get(fileId=uploaded["id"]).execute()
    assert set(got) == {"kind", "id", "name", "mimeType"}
    full = service.files().get(fileId=uploaded["id"], fields="*").execute()
    assert full["size"] == str(blob.stat().st_size) and full["version"].isdigit()
    with pytest.raises(HttpError) as info:
        service.files().get(fileId=uploaded["id"], fields="id,sha256").execute()
    assert info.value.resp.status == 400


def test_query_language_and_paging(drive: DriveStandIn, service) -> None:
    ids = {name: drive.add_file(name, name.encode()) for name in ("a.bin", "it's.bin", "b.txt")}
    found = service.files().list(q="name = 'it\\'s.bin'", fields="files(id)").execute()
    assert found == {"files": [{"id": ids["it's.bin"]}]}
    q = "(name contains 'a' or name = 'b.txt') and not mimeType = 'text/plain'"
    names = {f["name"] for f in service.files().list(q=q).execute()["files"]}
    assert names == {"a.bin", "b.txt"}
    pages, token = [], None
    while True:
        page = service.files().list(pageSize=2, pageToken=token, orderBy="name").execute()
        pages.append([f["name"] for f in page["files"]])
        token = page.get("nextPageToken")
        if not token:
            break
    assert pages == [["a.bin", "b.txt"], ["it's.bin"]]
    with pytest.raises(HttpError) as info:
        service.files().list(q="name === 'x'").execute()
    assert info.value.resp.status == 400


def test_delete_and_trash(drive: DriveStandIn, service) -> None:
    folder = drive.add_file("f")
    inner = drive.add_file("x", b"1", parent=folder)
    service.files().update(fileId=inner, body={"trashed": True}).execute()
    assert service.files().list(q="trashed = false").execute()["files"][0]["id"] == folder
    service.files().delete(fileId=folder).execute()
    with pytest.raises(HttpError) as info:
        service.files().get(fileId=inner).execute()
    assert info.value.resp.status == 404
    assert json.loads(info.value.content)["error"]["errors"][0]["reason"] == "notFound"


# --------------------------------------------------------------------------- auth, download


def test_wrong_token_is_httperror_401(drive: DriveStandIn, blob: Path) -> None:
    bad = build_service(drive.url, "expired")
    with pytest.raises(HttpError) as info:
        bad.files().list().execute()
    assert info.value.resp.status == 401
    error = json.loads(info.value.content)["error"]
    assert error["code"] == 401 and error["errors"][0]["reason"] == "authError"
    with pytest.raises(HttpError) as info:
        start_upload(bad, blob).next_chunk(num_retries=0)
    assert info.value.resp.status == 401
    with pytest.raises(HttpError) as info:
        build_service(drive.url, None).files().list().execute()
    assert info.value.resp.status == 401


def test_download_with_range(drive: DriveStandIn, service, blob: Path) -> None:
    data = blob.read_bytes()
    file_id = drive.add_file("w.bin", data)
    request = service.files().get_media(fileId=file_id)
    request.headers["range"] = "bytes=1000-1999"
    assert request.execute() == data[1000:2000]
    assert [r.status for r in drive.requests if r.kind == "download"] == [206]

    out = io.BytesIO()
    downloader = MediaIoBaseDownload(
        out, service.files().get_media(fileId=file_id), chunksize=400_000
    )
    done = False
    while not done:
        _, done = downloader.next_chunk(num_retries=0)
    assert out.getvalue() == data
    assert drive.requests[-1].headers["range"] == "bytes=1200000-1599999"
    assert drive.requests[-1].status == 206

    request = service.files().get_media(fileId=file_id)
    request.headers["range"] = f"bytes={len(data)}-"
    with pytest.raises(HttpError) as info:
        request.execute()
    assert info.value.resp.status == 416


# --------------------------------------------------------------------------- the server itself


def test_unread_bodies_are_consumed_on_kept_alive_connections(drive: DriveStandIn) -> None:
    port = int(drive.url.rsplit(":", 1)[1])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    # 401 (no token) and 404 (unknown path) both with bodies the handler never needed.
    for path in ("/drive/v3/files", "/nowhere"):
        conn.request("POST", path, body=b"x" * 100_000, headers={"Content-Type": "text/plain"})
        resp = conn.getresponse()
        resp.read()
        assert resp.status in (401, 404)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    conn.request("GET", "/drive/v3/files?fields=files(id)", headers=headers)
    resp = conn.getresponse()
    assert (resp.status, json.loads(resp.read())) == (200, {"files": []})
    conn.close()


def test_fail_next_on_metadata_requests(drive: DriveStandIn, service) -> None:
    drive.fail_next("list", 503, times=2)
    drive.fail_next("create", 500)
    for _ in range(2):
        with pytest.raises(HttpError) as info:
            service.files().list().execute()
        assert info.value.resp.status == 503
    assert "files" in service.files().list().execute()
    with pytest.raises(HttpError):
        service.files().create(body={"name": "d", "mimeType": FOLDER_MIME}).execute()
    # googleapiclient's own retries (num_retries) see the same faults
    drive.fail_next("create", 503)
    made = service.files().create(body={"name": "d", "mimeType": FOLDER_MIME})
    made._sleep = lambda _s: None
    assert made.execute(num_retries=1)["name"] == "d"


def test_lifetime_stops_the_server() -> None:
    server = DriveStandIn(lifetime=0.2)
    port = int(server.url.rsplit(":", 1)[1])
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        except OSError:
            break
        time.sleep(0.05)
    else:
        pytest.fail("server still listening after its lifetime")
    server.close()  # idempotent
