"""Publish to Google Drive (API v3) with google-api-python-client, resumably.

- The service is built from the client's own shipped discovery document with its `rootUrl` set
  to `WEIGHTPREP_DRIVE_ENDPOINT` (default `https://www.googleapis.com/`): measured with 2.202,
  `client_options={"api_endpoint": ...}` alone leaves media uploads on the discovery's https
  root, so a Drive-compatible proxy or a test server must be set this way.
- Uploads are resumable, in chunks of `chunk_size` (a multiple of 256 KiB). `next_chunk()` is
  called with `num_retries=0`, and retried here on 5xx, 429 and dropped connections (`OSError`:
  `ConnectionResetError`, `BrokenPipeError`, `RemoteDisconnected`) with exponential backoff and
  jitter: after an error the client asks the server how much it holds (`Content-Range: bytes
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

import json
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path

from weightprep.errors import InputError, NetworkError, VerificationError
from weightprep.io import faults
from weightprep.io.atomic import write_atomic
from weightprep.progress import NullProgress, Progress
from weightprep.publish.dest import Dest
from weightprep.publish.outcome import FileOutcome
from weightprep.publish.source import LocalFile, Source

SCOPES = ["https://www.googleapis.com/auth/drive"]
FOLDER = "application/vnd.google-apps.folder"
FILE_FIELDS = "id,name,size,mimeType,md5Checksum,sha256Checksum"
RETRIES = 8
DEFAULT_ROOT = "https://www.googleapis.com/"


@dataclass(frozen=True)
class RemoteFile:
    id: str
    size: int
    sha256: str | None
    md5: str | None


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


def _transient(exc: BaseException) -> bool:
    from googleapiclient.errors import HttpError

    if isinstance(exc, HttpError):
        s = _status(exc)
        return s >= 500 or s == 429
    return isinstance(exc, OSError) or type(exc).__module__.startswith("httplib2")


def _backoff(attempt: int) -> None:
    time.sleep(min(32.0, 0.25 * 2**attempt) * (0.5 + random.random() / 2))


def _call(what: str, fn):
    """Run a (non-upload) API call with our retry on transient errors."""
    from googleapiclient.errors import HttpError

    for attempt in range(RETRIES + 1):
        try:
            return fn()
        except Exception as exc:  # HttpError, OSError, httplib2 errors
            _refused(exc, what)
            if isinstance(exc, HttpError) and _status(exc) in (401, 403):
                raise InputError(
                    f"{what}: Drive refused ({_status(exc)}): check the credentials"
                ) from None
            if isinstance(exc, HttpError) and _status(exc) == 404:
                raise InputError(f"{what}: not found on Drive (404)") from None
            if not _transient(exc):
                raise
            if attempt == RETRIES:
                raise NetworkError(
                    f"{what}: still failing after {RETRIES} retries ({exc})"
                ) from None
            _backoff(attempt)
    raise AssertionError


def _refused(exc: BaseException, what: str) -> None:
    from google.auth.exceptions import RefreshError

    if isinstance(exc, RefreshError):
        raise InputError(f"{what}: the Google credentials were refused ({exc})") from None


def _q(text: str) -> str:
    return text.replace("\\", "\\\\").replace("'", "\\'")


def children(svc, parent: str) -> list[dict]:
    out, token = [], None
    while True:
        page = _call(
            f"list gdrive folder {parent}",
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
    made = _call(
        f"create gdrive folder {name}",
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


def _remote(f: dict) -> RemoteFile:
    return RemoteFile(f["id"], int(f.get("size", 0)), f.get("sha256Checksum"), f.get("md5Checksum"))


def walk(svc, folder_id: str, prefix: str = "") -> dict[str, RemoteFile]:
    out: dict[str, RemoteFile] = {}
    for f in children(svc, folder_id):
        rel = prefix + f["name"]
        if f.get("mimeType") == FOLDER:
            out.update(walk(svc, f["id"], rel + "/"))
        elif rel not in out:
            out[rel] = _remote(f)
    return out


def resolve_root(svc, dest: Dest, *, create: bool) -> str | None:
    folder = dest.target
    for name in dest.subpath:
        folder = ensure_folder(svc, folder, name, create=create)
        if folder is None:
            return None
    return folder


def remote_listing(dest: Dest, creds_path: Path | None) -> dict[str, RemoteFile]:
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
    f: LocalFile,
    parent: str,
    existing: RemoteFile | None,
    key: str,
    chunk: int,
    progress: Progress,
) -> tuple[dict, int]:
    """Upload one file resumably; return (Drive's file resource, bytes this process sent)."""
    from googleapiclient.errors import HttpError
    from googleapiclient.http import MediaFileUpload

    def fresh_request():
        media = MediaFileUpload(
            str(f.path), mimetype="application/octet-stream", chunksize=chunk, resumable=True
        )
        if existing is not None:
            return svc.files().update(
                fileId=existing.id, media_body=media, fields=FILE_FIELDS, supportsAllDrives=True
            )
        return svc.files().create(
            body={"name": Path(f.rel).name, "parents": [parent]},
            media_body=media,
            fields=FILE_FIELDS,
            supportsAllDrives=True,
        )

    request = fresh_request()
    saved = _load_state().get(key)
    if saved:
        request.resumable_uri = saved
        request._in_error_state = True  # ask the server how much it has before sending
    sent, failures, last = 0, 0, 0
    while True:
        try:
            before = request.resumable_progress
            status, body = request.next_chunk(num_retries=0)
        except Exception as exc:
            _refused(exc, f.rel)
            if isinstance(exc, HttpError) and _status(exc) in (404, 410) and request.resumable_uri:
                _save_session(key, None)  # the session expired: start this file again
                request, failures = fresh_request(), failures + 1
                if failures > RETRIES:
                    raise NetworkError(f"{f.rel}: Drive keeps losing the upload session") from None
                continue
            if isinstance(exc, HttpError) and _status(exc) in (401, 403):
                raise InputError(f"{f.rel}: Drive refused the upload ({_status(exc)})") from None
            if not _transient(exc):
                raise
            failures += 1
            if failures > RETRIES:
                raise NetworkError(
                    f"{f.rel}: upload still failing after {RETRIES} retries ({exc}); run again to "
                    "resume where it stopped"
                ) from None
            if request.resumable_uri:
                _save_session(key, request.resumable_uri)
            _backoff(failures)
            continue
        if request.resumable_uri:
            _save_session(key, request.resumable_uri)
        if body is not None:
            done = f.size - max(before, 0)
            sent += done
            progress.advance(f.size - last, f.rel)
            return body, sent
        failures = 0
        now = status.resumable_progress if status else request.resumable_progress
        sent += max(0, now - before)
        progress.advance(max(0, now - last), f.rel)
        faults.reached("drive-upload", max(0, now - last))
        last = now


def publish_drive(
    source: Source,
    dest: Dest,
    *,
    credentials: Path | None = None,
    chunk_size: int = 64 * 2**20,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> tuple[list[FileOutcome], list[str]]:
    progress = progress or NullProgress()
    svc = service(credentials)
    root = resolve_root(svc, dest, create=not dry_run)
    remote = {} if root is None else walk(svc, root)
    plan = []
    for f in source.files:
        r = remote.get(f.rel)
        same = r is not None and r.size == f.size and r.sha256 == f.sha256
        plan.append((f, r, "up-to-date" if same else ("replace" if r else "send")))
    if dry_run:
        return [
            FileOutcome(f.rel, f.sha256, f.size, s if s == "up-to-date" else f"would-{s}")
            for f, _, s in plan
        ], []
    assert root is not None
    progress.start(sum(f.size for f, _, s in plan if s != "up-to-date"), f"upload to {dest}")
    out = []
    folders: dict[str, str] = {"": root}
    try:
        for f, r, status in plan:
            if status == "up-to-date":
                out.append(FileOutcome(f.rel, f.sha256, f.size, status))
                continue
            parent_rel = str(Path(f.rel).parent) if "/" in f.rel else ""
            if parent_rel not in folders:
                pid = root
                for part in Path(parent_rel).parts:
                    pid = ensure_folder(svc, pid, part, create=True)
                folders[parent_rel] = pid
            key = f"{dest}|{f.rel}|{f.sha256}"
            body, sent = upload(svc, f, folders[parent_rel], r, key, chunk_size, progress)
            _save_session(key, None)
            got = (int(body.get("size", -1)), body.get("sha256Checksum"), body.get("md5Checksum"))
            if got[0] != f.size or got[1] != f.sha256:
                raise VerificationError(
                    f"{dest}/{f.rel}: Drive holds size {got[0]}, sha256 {got[1]}; expected "
                    f"{f.size}, {f.sha256}"
                )
            out.append(
                FileOutcome(
                    f.rel, f.sha256, f.size, "sent" if status == "send" else "replaced", sent
                )
            )
    finally:
        progress.finish()
    return out, []
