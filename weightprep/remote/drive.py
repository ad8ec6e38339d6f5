"""Google Drive (API v3) through google-api-python-client: list a folder with its checksums,
send a file resumably, fetch a file in Range requests.

- The service is built from the client's own shipped discovery document with its `rootUrl` set
  to `WEIGHTPREP_DRIVE_ENDPOINT` (default `https://www.googleapis.com/`): measured with 2.202,
  `client_options={"api_endpoint": ...}` alone leaves media uploads on the discovery's https
  root, so a Drive-compatible proxy or a test server must be set this way.
- Every call is made with `num_retries=0` and retried by weightprep's one loop
  (`remote.retry`, `WEIGHTPREP_RETRY_BUDGET`) on 5xx, 429, dropped or refused connections,
  unresolvable hosts and timeouts (`classify`). Uploads are resumable, in chunks of
  `chunk_size` (a multiple of 256 KiB): after an error the client asks the server how much it holds (`Content-Range: bytes
  */SIZE`) and continues from there. (The client's own `num_retries>0` re-sends a chunk stream it
  has already read.)
- The session URI is saved in a small state file (user cache dir, keyed by destination, path
  and sha256) as soon as it exists, so a new process after a kill or a Colab disconnect resumes
  the same file where it stopped (`HttpRequest.from_json` would drop the URI: it is set on a
  fresh request instead, with the request marked as recovering so that it queries first).
- Checksums are asked for explicitly (`fields=...sha256Checksum,md5Checksum,size`): Drive
  returns only kind, id, name and mimeType otherwise.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

from weightprep.checksum import CHUNK as READ_CHUNK
from weightprep.checksum import hashers
from weightprep.errors import DiskSpaceError, InputError, NetworkError, one_line
from weightprep.io import faults
from weightprep.io.atomic import write_atomic
from weightprep.progress import Progress
from weightprep.remote.hub import transport_cause
from weightprep.remote.listing import Listed
from weightprep.remote.location import Location
from weightprep.remote.retry import Retry, retrying

SCOPES = ["https://www.googleapis.com/auth/drive"]
FOLDER = "application/vnd.google-apps.folder"
FILE_FIELDS = "id,name,size,mimeType,md5Checksum,sha256Checksum"
DEFAULT_ROOT = "https://www.googleapis.com/"


def _client():
    try:
        import googleapiclient  # noqa: F401
        from googleapiclient.discovery import build_from_document
    except ImportError:
        raise InputError(
            "gdrive:// needs Google's Drive client: pip install 'weightprep[drive]'"
        ) from None
    return build_from_document


def credentials(path: Path | None):
    """--credentials FILE, else Application Default Credentials (what Colab's
    `auth.authenticate_user()` sets up), else GOOGLE_OAUTH_ACCESS_TOKEN."""
    _client()
    import google.auth
    import google.oauth2.credentials
    from google.auth.exceptions import DefaultCredentialsError

    if path is not None:
        try:
            info = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise InputError(f"{path}: not a readable credentials JSON ({exc})") from None
        kind = info.get("type") if isinstance(info, dict) else None
        try:
            if kind == "service_account":
                from google.oauth2 import service_account

                return service_account.Credentials.from_service_account_info(info, scopes=SCOPES)
            if kind == "authorized_user":
                return google.oauth2.credentials.Credentials.from_authorized_user_info(info, SCOPES)
        except (ValueError, KeyError) as exc:
            raise InputError(f"{path}: incomplete {kind} credentials ({exc})") from None
        raise InputError(f"{path}: type {kind!r}; expected service_account or authorized_user")
    try:
        creds, _ = google.auth.default(scopes=SCOPES)
        return creds
    except DefaultCredentialsError:
        pass
    token = os.environ.get("GOOGLE_OAUTH_ACCESS_TOKEN")
    if token:
        return google.oauth2.credentials.Credentials(token)
    raise InputError(
        "no Google credentials: pass --credentials FILE, set up Application Default Credentials "
        "(`gcloud auth application-default login`, or `auth.authenticate_user()` in Colab), or "
        "set GOOGLE_OAUTH_ACCESS_TOKEN"
    )


def service(creds_path: Path | None):
    """Drive v3 built from the client's shipped discovery document, every URL (API calls and
    media uploads) under WEIGHTPREP_DRIVE_ENDPOINT; the transport is googleapiclient's own
    `build_http()` (it does not follow 308, which resumable uploads need) with credentials."""
    build_from_document = _client()
    import google_auth_httplib2
    from googleapiclient.discovery_cache import get_static_doc
    from googleapiclient.http import build_http

    doc = json.loads(get_static_doc("drive", "v3"))
    root = os.environ.get("WEIGHTPREP_DRIVE_ENDPOINT", DEFAULT_ROOT).rstrip("/") + "/"
    doc["rootUrl"] = doc["mtlsRootUrl"] = root
    creds = credentials(creds_path)
    # a bare access token cannot be refreshed: let a 401 be an HttpError, not a RefreshError
    import google.oauth2.credentials

    bare = isinstance(creds, google.oauth2.credentials.Credentials) and not creds.refresh_token
    kw = {"refresh_status_codes": ()} if bare else {}
    http = google_auth_httplib2.AuthorizedHttp(creds, http=build_http(), **kw)
    return build_from_document(doc, http=http)


def _status(exc: BaseException) -> int:
    resp = getattr(exc, "resp", None)
    return int(getattr(resp, "status", 0) or 0)


def classify(exc: BaseException, what: str) -> str | None:
    """Drive's failure rules for `remote.retry`: 5xx, 429 and transport errors are transient;
    refused credentials, 401/403, 404 and other 4xx fail at once."""
    from google.auth.exceptions import RefreshError, TransportError
    from googleapiclient.errors import HttpError

    if isinstance(exc, RefreshError):
        raise InputError(f"{what}: the Google credentials were refused ({exc})") from None
    if isinstance(exc, HttpError):
        s = _status(exc)
        if s >= 500 or s == 429:
            return f"Drive answered {s}"
        if s in (401, 403):
            raise InputError(f"{what}: Drive refused ({s}): check the credentials") from None
        if s == 404:
            raise InputError(f"{what}: not found on Drive (404)") from None
        raise InputError(f"{what}: Drive answered {s} ({one_line(exc)})") from None
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:  # not the network: no retry
        raise DiskSpaceError(f"{what}: disk full ({exc})") from None
    if isinstance(exc, OSError | TransportError) or type(exc).__module__.startswith("httplib2"):
        return transport_cause(exc) or one_line(exc)
    return None


def call(what: str, fn):
    """Run a (non-upload) API call under the one retry loop with Drive's rules."""
    return retrying(what, fn, classify)


def _q(text: str) -> str:
    return text.replace("\\", "\\\\").replace("'", "\\'")


def children(svc, parent: str) -> list[dict]:
    out, token = [], None
    while True:
        page = call(
            f"gdrive://{parent}: list the folder",
            lambda token=token: (
                svc.files()
                .list(
                    q=f"'{_q(parent)}' in parents and trashed = false",
                    fields=f"nextPageToken, files({FILE_FIELDS})",
                    pageSize=1000,
                    pageToken=token,
                    supportsAllDrives=True,
                    includeItemsFromAllDrives=True,
                )
                .execute(num_retries=0)
            ),
        )
        out += page.get("files", [])
        token = page.get("nextPageToken")
        if not token:
            return out


def ensure_folder(svc, parent: str, name: str, *, create: bool) -> str | None:
    for f in children(svc, parent):
        if f.get("name") == name and f.get("mimeType") == FOLDER:
            return f["id"]
    if not create:
        return None
    made = call(
        f"gdrive://{parent}: create folder {name}",
        lambda: (
            svc.files()
            .create(
                body={"name": name, "mimeType": FOLDER, "parents": [parent]},
                fields="id",
                supportsAllDrives=True,
            )
            .execute(num_retries=0)
        ),
    )
    return made["id"]


def listed(f: dict) -> Listed:
    """Drive's file resource as a `Listed` (size, sha256Checksum, md5Checksum, id)."""
    size = int(f.get("size", -1))
    return Listed(size, f.get("sha256Checksum"), f.get("md5Checksum"), None, f.get("id"))


def walk(svc, folder_id: str, prefix: str = "") -> dict[str, Listed]:
    """Every file under `folder_id`, by its path below it, with its checksums."""
    out: dict[str, Listed] = {}
    for f in children(svc, folder_id):
        rel = prefix + f["name"]
        if f.get("mimeType") == FOLDER:
            out.update(walk(svc, f["id"], rel + "/"))
        elif rel not in out:
            out[rel] = listed(f)
    return out


def resolve_root(svc, dest: Location, *, create: bool) -> str | None:
    folder = dest.target
    for name in dest.subpath:
        folder = ensure_folder(svc, folder, name, create=create)
        if folder is None:
            return None
    return folder


def listing(dest: Location, creds_path: Path | None) -> dict[str, Listed]:
    """Every file under the Drive location `dest` with its checksums; {} when it is absent."""
    svc = service(creds_path)
    root = resolve_root(svc, dest, create=False)
    return {} if root is None else walk(svc, root)


# --- resumable sessions that survive the process ---------------------------------------------


def state_path() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "weightprep" / "drive-uploads.json"


def _load_state() -> dict:
    try:
        data = json.loads(state_path().read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _save_session(key: str, uri: str | None) -> None:
    """Record (or forget, with None) the session URI for `key`. No credentials are stored."""
    state = _load_state()
    if uri is None:
        if state.pop(key, None) is None:
            return
    else:
        if state.get(key) == uri:
            return
        state[key] = uri
    path = state_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(state, indent=1, sort_keys=True).encode())


def upload(
    svc,
    path: Path,
    rel: str,
    parent: str,
    existing: Listed | None,
    key: str,
    chunk: int,
    progress: Progress,
) -> tuple[dict, int]:
    """Upload the file at `path` as `rel` resumably (a session saved under `key` is resumed);
    return (Drive's file resource, bytes this process sent)."""
    from googleapiclient.errors import HttpError
    from googleapiclient.http import MediaFileUpload

    def fresh_request():
        media = MediaFileUpload(
            str(path), mimetype="application/octet-stream", chunksize=chunk, resumable=True
        )
        if existing is not None:
            return svc.files().update(
                fileId=existing.id, media_body=media, fields=FILE_FIELDS, supportsAllDrives=True
            )
        return svc.files().create(
            body={"name": Path(rel).name, "parents": [parent]},
            media_body=media,
            fields=FILE_FIELDS,
            supportsAllDrives=True,
        )

    request = fresh_request()
    saved = _load_state().get(key)
    if saved:
        request.resumable_uri = saved
        request._in_error_state = True  # ask the server how much it has before sending
    size = path.stat().st_size
    sent, last, lost = 0, 0, 0
    retry = Retry(f"{rel}: upload")
    while True:
        try:
            before = request.resumable_progress
            status, body = request.next_chunk(num_retries=0)
        except Exception as exc:
            if isinstance(exc, HttpError) and _status(exc) in (404, 410) and request.resumable_uri:
                _save_session(key, None)  # the session expired: start this file again
                request, lost = fresh_request(), lost + 1
                if lost > 3:
                    raise NetworkError(f"{rel}: Drive keeps losing the upload session") from None
                continue
            cause = classify(exc, rel)
            if cause is None:
                raise
            if request.resumable_uri:
                _save_session(key, request.resumable_uri)
            retry.failed(cause, "run the same command again to resume where it stopped")
            continue
        if request.resumable_uri:
            _save_session(key, request.resumable_uri)
        if body is not None:
            sent += size - max(before, 0)
            progress.advance(size - last, rel)
            return body, sent
        retry.progressed()
        now = status.resumable_progress if status else request.resumable_progress
        sent += max(0, now - before)
        progress.advance(max(0, now - last), rel)
        faults.reached("drive-upload", max(0, now - last))
        last = now


def download(
    svc, rel: str, r: Listed, part: Path, offset: int, chunk: int, algos, progress: Progress
) -> tuple[int, dict[str, str]]:
    """Append bytes `offset..size` of Drive file `r` to `part`, in Range requests of `chunk`;
    return (bytes downloaded, digests `algos` of the whole file)."""
    assert r.id is not None and r.size is not None
    hs = dict(zip(algos, hashers(algos, r.size), strict=True))
    if offset:
        with open(part, "rb") as f:
            while data := f.read(READ_CHUNK):
                for h in hs.values():
                    h.update(data)
    request = svc.files().get_media(fileId=r.id, supportsAllDrives=True)
    headers = {**request.headers, "accept-encoding": "identity"}
    got = 0
    with open(part, "r+b" if offset else "wb") as out:
        out.truncate(offset)
        out.seek(offset)
        while offset < r.size:
            end = min(offset + chunk, r.size) - 1
            data = call(
                f"download {rel} (bytes {offset}-{end})",
                lambda offset=offset, end=end: _range(request, headers, offset, end),
            )
            out.write(data)
            out.flush()
            for h in hs.values():
                h.update(data)
            offset += len(data)
            got += len(data)
            progress.advance(len(data), rel)
            faults.reached("fetch-download", len(data))
        os.fsync(out.fileno())
    return got, {a: h.hexdigest() for a, h in hs.items()}


def _range(request, headers: dict, start: int, end: int) -> bytes:
    """GET bytes start..end through the service's authorized transport; an error answer is
    raised as googleapiclient's HttpError (so `classify`'s rules apply), and a connection lost
    mid-answer as ConnectionError."""
    import http.client

    from googleapiclient.errors import HttpError

    try:
        resp, content = request.http.request(
            request.uri, "GET", headers={**headers, "range": f"bytes={start}-{end}"}
        )
    except http.client.HTTPException as exc:  # IncompleteRead: the connection closed early
        raise ConnectionError(f"connection lost: {type(exc).__name__}") from exc
    if resp.status == 200:  # the whole file: a server that ignores Range
        content = content[start : end + 1]
    elif resp.status == 206:
        first = resp.get("content-range", "").removeprefix("bytes ").split("-")[0]
        if first != str(start):
            raise ConnectionError(f"asked for bytes {start}-, got {resp.get('content-range')}")
    else:
        raise HttpError(resp, content, uri=request.uri)
    if not content:
        raise ConnectionError(f"empty answer for bytes {start}-{end}")
    return content[: end - start + 1]


def forget_session(key: str) -> None:
    """The upload saved under `key` is complete: drop its session URI."""
    _save_session(key, None)


def about(creds_path: Path | None) -> dict:
    """Drive's `about.get` for the credentials: who they are and the storage quota, a cheap
    check of the credentials before anything heavy. Missing credentials, or ones Drive refuses
    (401/403), are an InputError in one line."""
    svc = service(creds_path)
    got = call(
        "gdrive: check the credentials (about)",
        lambda: (
            svc.about()
            .get(fields="user(displayName,emailAddress),storageQuota(limit,usage)")
            .execute(num_retries=0)
        ),
    )
    user = got.get("user", {})
    quota = got.get("storageQuota", {})
    free = int(quota["limit"]) - int(quota.get("usage", 0)) if quota.get("limit") else None
    return {"user": user.get("emailAddress") or user.get("displayName") or "?", "free": free}
