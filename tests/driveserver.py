"""A stand-in for the Google Drive API v3, on 127.0.0.1, for tests.

`DriveStandIn` keeps files and folders in memory and speaks the part of Drive v3 that
google-api-python-client sends when a Drive service is built from the library's own static
discovery document with its root URL pointed here (`build_service` below does exactly that):

* `GET /drive/v3/files` (files.list) with `q`, `fields`, `pageSize`, `pageToken`, `orderBy`,
  `spaces`; `GET|PATCH|DELETE /drive/v3/files/{id}` (files.get, metadata-only files.update,
  files.delete), `GET /drive/v3/files/{id}?alt=media` (download, `Range: bytes=a-b` -> 206),
  `POST /drive/v3/files` (metadata-only files.create, e.g. folders), `GET /drive/v3/about`.
* Uploads: `POST /upload/drive/v3/files` and `PATCH /upload/drive/v3/files/{id}` with
  `uploadType=resumable` (session -> 200 + `Location`), `media` or `multipart`; then
  `PUT <session URI>` with `Content-Range: bytes a-b/TOTAL` (-> 308 + `Range: bytes=0-N`, or
  200 + the file resource when complete) and the status query `Content-Range: bytes */TOTAL`.

Drive behaviours it copies on purpose, because client code depends on them:

* Without `fields`, a file resource is only `kind, id, name, mimeType` (a list answer is
  `kind, incompleteSearch, files(kind,id,name,mimeType)` and `nextPageToken` when there is one);
  a field that the File resource does not have is a 400, as on Drive.
* `size`, `version`, `quotaBytesUsed` are strings (int64 in JSON); `md5Checksum`,
  `sha1Checksum` and `sha256Checksum` are hex digests of the bytes the server really received.
* A resumable session accepts only contiguous data: a chunk that does not start exactly at the
  bytes the server already holds is read and thrown away, and the answer is 308 with the current
  `Range` (no `Range` header at all while nothing is held), which is what the client resumes from.
  Session URIs stay valid (across client processes) until the upload completes; afterwards a PUT
  to them answers 200 with the finished file, as Drive does.
* Errors carry Drive's JSON body `{"error": {"code", "message", "errors": [{...}], "status"}}`.
  With `token` set every request, session PUTs included, needs `Authorization: Bearer <token>`.

Fault injection for tests: `fail_next(kind, status, times)`, `drop_next_chunk(after_bytes)`,
`expire_sessions()`, `close_idle_connections()`; counters `bytes_received`, `wire_bytes`,
`received_by_file`, `received_for(name)`, `bytes_served`; `requests` (the request log).

It is standard library only (the `build_service` helper imports googleapiclient lazily) and stops
on `close()` or, at the latest, after `lifetime` seconds.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import socket
import struct
import threading
import traceback
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

FOLDER_MIME = "application/vnd.google-apps.folder"
ROOT_ID = "root"
# Drive asks for resumable chunks in multiples of this (all but the last).
CHUNK_GRANULARITY = 256 * 1024

# The File resource's fields (Drive v3 discovery document, schemas.File.properties).
FILE_FIELDS = frozenset(
    """appProperties capabilities clientEncryptionDetails contentHints contentRestrictions
    copyRequiresWriterPermission createdTime description downloadRestrictions driveId
    explicitlyTrashed exportLinks fileExtension folderColorRgb fullFileExtension
    hasAugmentedPermissions hasThumbnail headRevisionId iconLink id imageMediaMetadata
    inheritedPermissionsDisabled isAppAuthorized kind labelInfo lastModifyingUser
    linkShareMetadata md5Checksum mimeType modifiedByMe modifiedByMeTime modifiedTime name
    originalFilename ownedByMe owners parents permissionIds permissions properties quotaBytesUsed
    resourceKey sha1Checksum sha256Checksum shared sharedWithMeTime sharingUser shortcutDetails
    size spaces starred teamDriveId thumbnailLink thumbnailVersion trashed trashedTime
    trashingUser version videoMediaMetadata viewedByMe viewedByMeTime viewersCanCopyContent
    webContentLink webViewLink writersCanShare""".split()
)
FILE_LIST_FIELDS = frozenset({"files", "incompleteSearch", "kind", "nextPageToken"})
DEFAULT_FILE_FIELDS = "kind,id,name,mimeType"
DEFAULT_LIST_FIELDS = "kind,incompleteSearch,nextPageToken,files(kind,id,name,mimeType)"
# Metadata a client may set on create/update (the rest is read-only or unsupported here).
WRITABLE_FIELDS = frozenset(
    {"name", "mimeType", "parents", "description", "appProperties", "properties", "starred"}
    | {"trashed", "originalFilename", "modifiedTime", "createdTime", "id"}
)

_REASONS = {
    400: ("badRequest", "INVALID_ARGUMENT"),
    401: ("authError", "UNAUTHENTICATED"),
    403: ("forbidden", "PERMISSION_DENIED"),
    404: ("notFound", "NOT_FOUND"),
    408: ("requestTimeout", "DEADLINE_EXCEEDED"),
    409: ("conflict", "ALREADY_EXISTS"),
    412: ("conditionNotMet", "FAILED_PRECONDITION"),
    416: ("requestedRangeNotSatisfiable", "OUT_OF_RANGE"),
    429: ("rateLimitExceeded", "RESOURCE_EXHAUSTED"),
    500: ("internalError", "INTERNAL"),
    502: ("badGateway", "UNAVAILABLE"),
    503: ("backendError", "UNAVAILABLE"),
    504: ("backendError", "DEADLINE_EXCEEDED"),
}


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _new_id() -> str:
    return "1" + secrets.token_urlsafe(24)[:32]


class DriveError(Exception):
    """An error answer, rendered as Drive's JSON error body."""

    def __init__(
        self,
        code: int,
        message: str,
        reason: str | None = None,
        *,
        location: str | None = None,
        location_type: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason or _REASONS.get(code, ("unknown", "UNKNOWN"))[0]
        self.location = location
        self.location_type = location_type
        self.headers = headers or {}

    def body(self) -> dict:
        item: dict[str, str] = {"message": self.message, "domain": "global", "reason": self.reason}
        if self.location:
            item["location"] = self.location
            item["locationType"] = self.location_type or "parameter"
        error: dict[str, Any] = {"code": self.code, "message": self.message, "errors": [item]}
        status = _REASONS.get(self.code)
        if status:
            error["status"] = status[1]
        return {"error": error}


def _not_found(file_id: str) -> DriveError:
    return DriveError(404, f"File not found: {file_id}.", "notFound", location="fileId")


# --------------------------------------------------------------------------- fields selection


def _parse_fields(text: str) -> dict[str, Any]:
    """`a,b/c,files(id,name)` -> {"a": None, "b": {"c": None}, "files": {"id": None, ...}}.

    None means "the whole value"."""
    pos = 0

    def parse_list(closing: str | None) -> dict[str, Any]:
        nonlocal pos
        out: dict[str, Any] = {}
        while True:
            while pos < len(text) and text[pos] in " \t":
                pos += 1
            m = re.compile(r"[A-Za-z0-9_*$.\-]+(?:/[A-Za-z0-9_*$.\-]+)*").match(text, pos)
            if not m:
                raise ValueError(text)
            path = m.group(0).split("/")
            pos = m.end()
            sub: dict[str, Any] | None = None
            if pos < len(text) and text[pos] == "(":
                pos += 1
                sub = parse_list(")")
            node = out
            for part in path[:-1]:
                nxt = node.get(part, {})
                if nxt is None:  # already asked whole
                    break
                node[part] = nxt
                node = nxt
            else:
                _merge(node, path[-1], sub)
            while pos < len(text) and text[pos] in " \t":
                pos += 1
            if pos < len(text) and text[pos] == ",":
                pos += 1
                continue
            if closing and pos < len(text) and text[pos] == closing:
                pos += 1
                return out
            if closing is None and pos == len(text):
                return out
            raise ValueError(text)

    return parse_list(None)


def _merge(node: dict[str, Any], key: str, sub: dict[str, Any] | None) -> None:
    if key in node and node[key] is None:
        return
    if sub is None:
        node[key] = None
    else:
        node.setdefault(key, {})
        for k, v in sub.items():
            _merge(node[key], k, v)


def _check_fields(tree: dict[str, Any], allowed: frozenset[str], nested: dict[str, Any]) -> None:
    for key, sub in tree.items():
        if key == "*":
            continue
        if key not in allowed:
            raise ValueError(key)
        if sub is not None and key in nested:
            _check_fields(sub, nested[key][0], nested[key][1])


def _select(value: Any, tree: dict[str, Any] | None) -> Any:
    if tree is None:
        return value
    if isinstance(value, list):
        return [_select(v, tree) for v in value]
    if not isinstance(value, dict):
        return value
    if "*" in tree:
        out = {k: _select(v, tree.get(k)) for k, v in value.items()}
        return out
    return {k: _select(value[k], sub) for k, sub in tree.items() if k in value}


def _fields_tree(text: str | None, default: str, *, listing: bool) -> dict[str, Any]:
    try:
        tree = _parse_fields(text or default)
        if listing:
            _check_fields(tree, FILE_LIST_FIELDS, {"files": (FILE_FIELDS, {})})
        else:
            _check_fields(tree, FILE_FIELDS, {})
    except ValueError as e:
        raise DriveError(
            400, f"Invalid field selection {e.args[0]}", "invalidParameter", location="fields"
        ) from None
    return tree


# --------------------------------------------------------------------------- query language

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<str>'(?:[^'\\]|\\.)*')
      | (?P<op>!=|<=|>=|=|<|>|\(|\)|\{|\})
      | (?P<num>-?\d+(?:\.\d+)?)
      | (?P<word>[A-Za-z_][A-Za-z0-9_.]*)
    )""",
    re.X,
)


class _Query:
    """A small recursive-descent parser for Drive's `q` language, evaluated per file.

    Supported terms: `name|mimeType|fullText (=|!=|contains) '...'`, `'<id>' in parents`,
    `trashed|starred = true|false`, `createdTime|modifiedTime (<|<=|=|!=|>|>=) '<RFC3339>'`,
    `'...' in owners|writers|readers` and `sharedWithMe` (always "me"), joined with `and`, `or`,
    `not` and parentheses. Anything else is a 400 "Invalid Value" on `q`, as Drive answers."""

    def __init__(self, text: str) -> None:
        self.tokens: list[tuple[str, str]] = []
        pos = 0
        text = text.strip()
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if not m or m.end() == pos:
                raise ValueError(f"bad token at {pos}")
            kind = m.lastgroup or ""
            self.tokens.append((kind, m.group(kind)))
            pos = m.end()
            while pos < len(text) and text[pos].isspace():
                pos += 1
        self.i = 0
        self.tree = self._or() if self.tokens else ("true",)
        if self.i != len(self.tokens):
            raise ValueError("trailing tokens")

    def _peek(self) -> tuple[str, str] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def _next(self) -> tuple[str, str]:
        tok = self._peek()
        if tok is None:
            raise ValueError("unexpected end")
        self.i += 1
        return tok

    def _is_word(self, word: str) -> bool:
        tok = self._peek()
        return tok is not None and tok[0] == "word" and tok[1].lower() == word

    def _or(self) -> tuple:
        left = self._and()
        while self._is_word("or"):
            self.i += 1
            left = ("or", left, self._and())
        return left

    def _and(self) -> tuple:
        left = self._unary()
        while self._is_word("and"):
            self.i += 1
            left = ("and", left, self._unary())
        return left

    def _unary(self) -> tuple:
        if self._is_word("not"):
            self.i += 1
            return ("not", self._unary())
        tok = self._peek()
        if tok == ("op", "("):
            self.i += 1
            inner = self._or()
            if self._next() != ("op", ")"):
                raise ValueError("missing )")
            return inner
        return self._term()

    @staticmethod
    def _value(tok: tuple[str, str]) -> Any:
        kind, text = tok
        if kind == "str":
            return re.sub(r"\\(.)", r"\1", text[1:-1])
        if kind == "num":
            return float(text)
        if kind == "word" and text.lower() in ("true", "false"):
            return text.lower() == "true"
        raise ValueError(f"not a value: {text}")

    def _term(self) -> tuple:
        first = self._next()
        if first[0] in ("str", "num"):  # 'value' in collection
            value = self._value(first)
            if not self._is_word("in"):
                raise ValueError("expected in")
            self.i += 1
            coll = self._next()
            if coll[0] != "word" or coll[1] not in ("parents", "owners", "writers", "readers"):
                raise ValueError(f"unknown collection {coll[1]}")
            return ("in", value, coll[1])
        if first[0] != "word":
            raise ValueError(f"unexpected {first[1]}")
        name = first[1]
        if name == "sharedWithMe":
            return ("true",)
        op_tok = self._next()
        op = op_tok[1].lower() if op_tok[0] in ("op", "word") else ""
        if op not in ("=", "!=", "<", "<=", ">", ">=", "contains"):
            raise ValueError(f"unknown operator {op_tok[1]}")
        value = self._value(self._next())
        allowed = {
            "name": ("=", "!=", "contains"),
            "mimeType": ("=", "!=", "contains"),
            "fullText": ("contains",),
            "trashed": ("=", "!="),
            "starred": ("=", "!="),
            "createdTime": ("=", "!=", "<", "<=", ">", ">="),
            "modifiedTime": ("=", "!=", "<", "<=", ">", ">="),
        }
        if name not in allowed or op not in allowed[name]:
            raise ValueError(f"unsupported term {name} {op}")
        return ("cmp", name, op, value)

    def matches(self, f: dict) -> bool:
        return self._eval(self.tree, f)

    def _eval(self, node: tuple, f: dict) -> bool:
        tag = node[0]
        if tag == "true":
            return True
        if tag == "and":
            return self._eval(node[1], f) and self._eval(node[2], f)
        if tag == "or":
            return self._eval(node[1], f) or self._eval(node[2], f)
        if tag == "not":
            return not self._eval(node[1], f)
        if tag == "in":
            _, value, coll = node
            if coll == "parents":
                return value in f["parents"]
            return value in ("me", "user@example.com")
        _, name, op, value = node
        if name == "fullText":
            hay = (f["name"] + " " + f.get("description", "")).lower()
            return str(value).lower() in hay
        actual = f.get(name)
        if op == "contains":
            actual, value = str(actual).lower(), str(value).lower()
            if name == "name":  # Drive: prefix match on the name or one of its words
                words = [actual, *re.split(r"[^0-9a-z]+", actual)]
                return any(w.startswith(value) for w in words if w)
            return value in actual
        return {
            "=": actual == value,
            "!=": actual != value,
            "<": actual < value,
            "<=": actual <= value,
            ">": actual > value,
            ">=": actual >= value,
        }[op]


# --------------------------------------------------------------------------- state


@dataclass
class RequestRecord:
    """One request as the server saw it (headers with lower-cased names)."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    kind: str = "unknown"
    status: int | None = None  # None: no answer (connection dropped)
    body_bytes: int = 0
    content_range: str | None = None


@dataclass
class UploadSession:
    upload_id: str
    uri: str
    file_id: str
    update: bool  # PATCH (replace content of file_id) rather than create
    metadata: dict
    content_type: str
    total: int | None
    fields: str | None
    params: dict[str, str] = field(default_factory=dict)  # addParents/removeParents (update)
    data: bytearray = field(default_factory=bytearray)
    done: dict | None = None  # the file, once complete
    expired: bool = False

    @property
    def offset(self) -> int:
        return len(self.data)


@dataclass
class _Fault:
    kind: str
    status: int
    times: int
    headers: dict[str, str]
    message: str | None


@dataclass
class _Drop:
    after_bytes: int
    keep: bool
    times: int


class _Dropped(Exception):
    """The handler hung up on purpose."""


class DriveStandIn:
    """An in-memory Google Drive v3 on http://127.0.0.1:<port> (`.url`).

    `token`: when set, every request needs `Authorization: Bearer <token>` (else 401).
    `lifetime`: seconds after which the server stops by itself (it also stops on `close()`).
    `io_timeout`: seconds a connection may sit idle or stall mid-body before the server closes it.
    """

    def __init__(
        self, *, token: str | None = None, lifetime: float = 600, io_timeout: float = 10.0
    ) -> None:
        self.token = token
        self.lock = threading.RLock()
        self.files: dict[str, dict] = {}
        self.sessions: dict[str, UploadSession] = {}
        self.requests: list[RequestRecord] = []
        self.bytes_received = 0  # upload payload bytes accepted into files/sessions
        self.wire_bytes = 0  # upload payload bytes read at all (incl. rejected/failed/dropped)
        self.bytes_served = 0  # media bytes sent by downloads
        self.received_by_file: dict[str, int] = {}  # file id -> accepted upload bytes
        self._faults: list[_Fault] = []
        self._drops: list[_Drop] = []
        self._conns: set[socket.socket] = set()
        self._idle: set[socket.socket] = set()
        self._closed = False
        now = _now()
        self.files[ROOT_ID] = {
            "id": ROOT_ID,
            "name": "My Drive",
            "mimeType": FOLDER_MIME,
            "parents": [],
            "bytes": None,
            "createdTime": now,
            "modifiedTime": now,
            "trashed": False,
            "version": 1,
        }

        outer = self

        class Handler(_Handler):
            server_state = outer
            timeout = io_timeout

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.02},  # so that close() returns at once
            name=f"drive-stand-in-{port}",
            daemon=True,
        )
        self._thread.start()
        self._timer = threading.Timer(lifetime, self.close)
        self._timer.daemon = True
        self._timer.start()

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        with self.lock:
            if self._closed:
                return
            self._closed = True
            conns = list(self._conns)
        self._timer.cancel()
        self._server.shutdown()
        self._server.server_close()
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def __enter__(self) -> DriveStandIn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ fault injection

    def fail_next(
        self,
        kind: str,
        status: int = 503,
        times: int = 1,
        *,
        headers: dict[str, str] | None = None,
        message: str | None = None,
    ) -> None:
        """Answer the next `times` requests of `kind` with `status` and Drive's JSON error body.

        Kinds: "list", "get" (metadata), "download" (alt=media), "create" (metadata-only
        POST /drive/v3/files), "update" (metadata PATCH), "delete", "about", "initiate" (starting
        a resumable session, POST/PATCH /upload/...?uploadType=resumable), "upload" (a
        one-request media/multipart upload), "chunk" (a PUT to a session that carries data),
        "status" (an empty PUT `Content-Range: bytes */N`), or "*" for any request.
        A failed chunk's body is read and thrown away: none of it is kept."""
        with self.lock:
            self._faults.append(_Fault(kind, status, times, dict(headers or {}), message))

    def drop_next_chunk(self, after_bytes: int = 0, *, keep: bool = False, times: int = 1) -> None:
        """On the next `times` session PUTs that carry data, read `after_bytes` of the body and
        then reset the connection (SO_LINGER 0: a TCP RST) without any answer; the client sees
        ConnectionResetError (or BrokenPipeError while it is still sending). With `keep`, the
        bytes read before the reset are kept in the session (when they continue it), the way
        Drive may persist a part of an interrupted chunk; with `keep` and an `after_bytes` of at
        least the chunk's length, the whole chunk is kept (completing the file if it was the
        last) and only the answer is lost."""
        with self.lock:
            self._drops.append(_Drop(after_bytes, keep, times))

    def expire_sessions(self) -> None:
        """Make every unfinished upload session answer 404, as an expired Drive session does."""
        with self.lock:
            for s in self.sessions.values():
                if s.done is None:
                    s.expired = True

    def close_idle_connections(self) -> None:
        """Close (gracefully, FIN) every kept-alive connection that is waiting for its next
        request, as a front end does with idle connections."""
        with self.lock:
            idle = list(self._idle)
        for conn in idle:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    # ------------------------------------------------------------------ inspection

    def received_for(self, name: str) -> int:
        """Upload bytes accepted for files (or pending uploads) called `name`."""
        with self.lock:
            names = {fid: f["name"] for fid, f in self.files.items()}
            for s in self.sessions.values():
                names.setdefault(s.file_id, s.metadata.get("name", "Untitled"))
            return sum(n for fid, n in self.received_by_file.items() if names.get(fid) == name)

    def requests_of(self, kind: str) -> list[RequestRecord]:
        with self.lock:
            return [r for r in self.requests if r.kind == kind]

    def find(self, name: str, parent: str | None = None) -> list[dict]:
        """Files called `name` (under `parent`), not trashed: the internal records."""
        with self.lock:
            return [
                f
                for fid, f in self.files.items()
                if fid != ROOT_ID
                and f["name"] == name
                and not f["trashed"]
                and (parent is None or parent in f["parents"])
            ]

    def content(self, file_id: str) -> bytes:
        with self.lock:
            return bytes(self.files[file_id]["bytes"] or b"")

    def add_file(
        self,
        name: str,
        data: bytes | None = None,
        *,
        parent: str = ROOT_ID,
        mime_type: str | None = None,
    ) -> str:
        """Seed a file (or, with data None and no mime_type, a folder); returns its id."""
        with self.lock:
            meta = {"name": name, "parents": [parent]}
            meta["mimeType"] = mime_type or (
                FOLDER_MIME if data is None else "application/octet-stream"
            )
            return self._create(meta, data if data is not None else None, _new_id())["id"]

    # ------------------------------------------------------------------ model (call with lock)

    def _fault_for(self, kind: str) -> _Fault | None:
        for fault in self._faults:
            if fault.times > 0 and fault.kind in (kind, "*"):
                fault.times -= 1
                if fault.times == 0:
                    self._faults.remove(fault)
                return fault
        return None

    def _drop_for(self) -> _Drop | None:
        for drop in self._drops:
            if drop.times > 0:
                drop.times -= 1
                if drop.times == 0:
                    self._drops.remove(drop)
                return drop
        return None

    def _resource(self, f: dict) -> dict:
        res: dict[str, Any] = {
            "kind": "drive#file",
            "id": f["id"],
            "name": f["name"],
            "mimeType": f["mimeType"],
            "parents": list(f["parents"]),
            "trashed": f["trashed"],
            "explicitlyTrashed": f["trashed"],
            "starred": f.get("starred", False),
            "createdTime": f["createdTime"],
            "modifiedTime": f["modifiedTime"],
            "version": str(f["version"]),
            "spaces": ["drive"],
            "ownedByMe": True,
            "shared": False,
            "webViewLink": f"https://drive.google.com/file/d/{f['id']}/view",
        }
        for key in ("description", "appProperties", "properties", "originalFilename"):
            if key in f:
                res[key] = f[key]
        data = f["bytes"]
        if data is not None:
            res["size"] = str(len(data))
            res["quotaBytesUsed"] = str(len(data))
            res["md5Checksum"] = hashlib.md5(data).hexdigest()
            res["sha1Checksum"] = hashlib.sha1(data).hexdigest()
            res["sha256Checksum"] = hashlib.sha256(data).hexdigest()
            res["headRevisionId"] = f"rev{f['version']}"
            res["webContentLink"] = f"https://drive.google.com/uc?id={f['id']}&export=download"
            name = f["name"]
            if "." in name.strip("."):
                res["fileExtension"] = name.rsplit(".", 1)[1]
                res["fullFileExtension"] = name.split(".", 1)[1]
        else:
            res["quotaBytesUsed"] = "0"
        return res

    def _get(self, file_id: str) -> dict:
        f = self.files.get(file_id)
        if f is None:
            raise _not_found(file_id)
        return f

    def _check_parents(self, parents: list) -> list[str]:
        if not isinstance(parents, list) or not all(isinstance(p, str) for p in parents):
            raise DriveError(400, "Invalid value for parents.", "invalid", location="parents")
        if len(parents) > 1:
            raise DriveError(
                403,
                "A file can only have one parent folder; adding more is not allowed.",
                "cannotAddParent",
            )
        for p in parents:
            if self._get(p)["mimeType"] != FOLDER_MIME:
                raise DriveError(403, f"{p} is not a folder.", "notAFolder", location="parents")
        return list(parents) or [ROOT_ID]

    def _check_metadata(self, meta: Any) -> dict:
        if not isinstance(meta, dict):
            raise DriveError(400, "Invalid JSON payload received.", "parseError")
        for key in meta:
            if key not in FILE_FIELDS:
                raise DriveError(
                    400,
                    f'Invalid JSON payload received. Unknown name "{key}": Cannot find field.',
                    "parseError",
                )
            if key not in WRITABLE_FIELDS:
                raise DriveError(
                    403,
                    f"The resource body includes fields which are not directly writable: {key}",
                    "fieldNotWritable",
                )
        if "name" in meta and not isinstance(meta["name"], str):
            raise DriveError(400, "Invalid value for name.", "invalid", location="name")
        return meta

    def _create(self, meta: dict, data: bytes | None, file_id: str) -> dict:
        parents = self._check_parents(meta.get("parents", []))
        now = _now()
        mime = meta.get("mimeType") or ("application/octet-stream" if data is not None else None)
        if mime is None:
            mime = "application/octet-stream"
        if mime == FOLDER_MIME:
            data = None
        elif data is None:
            data = b""
        f = {
            "id": file_id,
            "name": meta.get("name", "Untitled"),
            "mimeType": mime,
            "parents": parents,
            "bytes": bytes(data) if data is not None else None,
            "createdTime": meta.get("createdTime", now),
            "modifiedTime": meta.get("modifiedTime", now),
            "trashed": bool(meta.get("trashed", False)),
            "version": 1,
        }
        for key in ("description", "appProperties", "properties", "originalFilename", "starred"):
            if key in meta:
                f[key] = meta[key]
        self.files[file_id] = f
        return f

    def _update(self, f: dict, meta: dict, query: dict[str, str], data: bytes | None) -> dict:
        if "id" in meta and meta["id"] != f["id"]:
            raise DriveError(403, "The id cannot be changed.", "fieldNotWritable")
        if "parents" in meta:
            raise DriveError(
                403,
                "The parents field is not directly writable in update requests. "
                "Use the addParents and removeParents parameters instead.",
                "fieldNotWritable",
            )
        parents = list(f["parents"])
        for p in filter(None, query.get("removeParents", "").split(",")):
            if p in parents:
                parents.remove(p)
        for p in filter(None, query.get("addParents", "").split(",")):
            if p not in parents:
                parents.append(p)
        if parents != f["parents"]:
            f["parents"] = self._check_parents(parents)
        for key in ("name", "mimeType", "description", "appProperties", "properties"):
            if key in meta:
                f[key] = meta[key]
        for key in ("trashed", "starred", "originalFilename", "modifiedTime"):
            if key in meta:
                f[key] = meta[key]
        if data is not None:
            if f["mimeType"] == FOLDER_MIME:
                raise DriveError(400, "A folder cannot have content.", "badContent")
            f["bytes"] = bytes(data)
        if "modifiedTime" not in meta:
            f["modifiedTime"] = _now()
        f["version"] += 1
        return f

    def _delete(self, file_id: str) -> None:
        if file_id == ROOT_ID:
            raise DriveError(403, "The user does not have sufficient permissions.", "forbidden")
        self._get(file_id)
        doomed = {file_id}
        changed = True
        while changed:  # a folder takes its descendants with it
            changed = False
            for fid, f in self.files.items():
                if fid not in doomed and doomed.intersection(f["parents"]):
                    doomed.add(fid)
                    changed = True
        for fid in doomed:
            del self.files[fid]

    def _list(self, query: dict[str, str]) -> dict:
        try:
            q = _Query(query.get("q", ""))
        except ValueError:
            raise DriveError(400, "Invalid Value", "invalid", location="q") from None
        try:
            size = int(query.get("pageSize", "100"))
            start = (
                int(base64.urlsafe_b64decode(query["pageToken"]).decode())
                if (query.get("pageToken"))
                else 0
            )
        except (ValueError, UnicodeDecodeError):
            raise DriveError(400, "Invalid Value", "invalid", location="pageToken") from None
        size = max(1, min(size, 1000))
        spaces = query.get("spaces", "drive").split(",")
        hits = []
        if "drive" in spaces:
            hits = [f for fid, f in self.files.items() if fid != ROOT_ID and q.matches(f)]
        order = query.get("orderBy", "")
        for key in reversed([k.strip() for k in order.split(",") if k.strip()]):
            name, _, direction = key.partition(" ")
            desc = direction.strip().lower() == "desc"
            if name == "folder":
                hits.sort(key=lambda f: f["mimeType"] != FOLDER_MIME, reverse=desc)
            elif name in ("name", "createdTime", "modifiedTime"):
                hits.sort(key=lambda f, n=name: f[n], reverse=desc)
            elif name == "name_natural":
                hits.sort(key=lambda f: f["name"].lower(), reverse=desc)
        page = hits[start : start + size]
        out: dict[str, Any] = {
            "kind": "drive#fileList",
            "incompleteSearch": False,
            "files": [self._resource(f) for f in page],
        }
        if start + size < len(hits):
            out["nextPageToken"] = base64.urlsafe_b64encode(str(start + size).encode()).decode()
        return out

    def _accept(self, session: UploadSession, chunk: bytes) -> None:
        session.data += chunk
        self.bytes_received += len(chunk)
        self.received_by_file[session.file_id] = self.received_by_file.get(
            session.file_id, 0
        ) + len(chunk)

    def _finish(self, session: UploadSession) -> dict:
        meta = dict(session.metadata)
        if session.update:
            f = self._update(self._get(session.file_id), meta, session.params, bytes(session.data))
        else:
            meta.setdefault("mimeType", session.content_type)
            f = self._create(meta, bytes(session.data), session.file_id)
        session.done = f
        session.data = bytearray()  # keep only the count (in received_by_file)
        return f


# --------------------------------------------------------------------------- HTTP


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "DriveStandIn/1.0"
    sys_version = ""
    server_state: DriveStandIn  # set by the subclass DriveStandIn builds
    record: RequestRecord | None = None

    def log_message(self, *args: object) -> None:
        pass

    # BaseHTTPRequestHandler looks these up by name.
    def do_GET(self) -> None:
        self._handle()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_GET

    def setup(self) -> None:
        super().setup()
        with self.server_state.lock:
            self.server_state._conns.add(self.connection)

    def finish(self) -> None:
        with self.server_state.lock:
            self.server_state._conns.discard(self.connection)
            self.server_state._idle.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    def handle_one_request(self) -> None:
        with self.server_state.lock:
            self.server_state._idle.add(self.connection)
        try:
            # The idle mark is cleared as soon as a request line has arrived (in _handle).
            super().handle_one_request()
        except (ConnectionError, TimeoutError, _Dropped):
            self.close_connection = True
        finally:
            with self.server_state.lock:
                self.server_state._idle.discard(self.connection)

    # ------------------------------------------------------------------ plumbing

    def _read_exact(self, n: int) -> bytes:
        parts = []
        while n > 0:
            part = self.rfile.read(min(n, 1 << 20))
            if not part:
                raise ConnectionError("client closed mid-body")
            parts.append(part)
            n -= len(part)
        return b"".join(parts)

    def _body_length(self) -> int | None:
        """The Content-Length, or None for a chunked body."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return None
        try:
            n = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            n = -1
        if n < 0:
            self.close_connection = True
            raise DriveError(400, "Bad Content-Length.", "badRequest")
        return n

    def _read_body(self) -> bytes:
        n = self._body_length()
        if n is None:  # Transfer-Encoding: chunked
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                parts.append(self._read_exact(size))
                self.rfile.readline()
            body = b"".join(parts)
        else:
            body = self._read_exact(n)
        if self.record is not None:
            self.record.body_bytes = len(body)
        return body

    def _send(self, status: int, body: Any = b"", headers: dict[str, str] | None = None) -> None:
        if isinstance(body, dict | list):
            data = json.dumps(body, indent=1).encode()
            content_type = "application/json; charset=UTF-8"
        else:
            data = bytes(body)
            content_type = None
        self.send_response(status)
        hdrs = dict(headers or {})
        if content_type and not any(k.lower() == "content-type" for k in hdrs):
            hdrs["Content-Type"] = content_type
        hdrs.setdefault("Content-Length", str(len(data)))
        hdrs.setdefault("Vary", "Origin, X-Origin")
        for k, v in hdrs.items():
            self.send_header(k, v)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.record is not None:  # before the body: the client may act on it at once
            self.record.status = status
        if self.command != "HEAD" and data:
            self.wfile.write(data)

    def _error(self, err: DriveError) -> None:
        self._send(err.code, err.body(), err.headers)

    def _drop(self) -> None:
        """Hang up with a TCP RST, without answering."""
        conn = self.connection
        try:
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.close_connection = True
        for f in (self.rfile, self.wfile):
            try:
                f.close()
            except OSError:
                pass
        conn.close()
        raise _Dropped()

    # ------------------------------------------------------------------ dispatch

    def _handle(self) -> None:
        state = self.server_state
        with state.lock:
            state._idle.discard(self.connection)
        split = urlsplit(self.path)
        path = unquote(split.path)
        query = dict(parse_qsl(split.query, keep_blank_values=True))
        method = self.command
        headers = {k.lower(): v for k, v in self.headers.items()}
        record = RequestRecord(method, path, query, headers)
        record.content_range = headers.get("content-range")
        self.record = record
        with state.lock:
            state.requests.append(record)
        if self.headers.get("Expect", "").lower() == "100-continue":
            self.send_response_only(100)
            self.end_headers()
        try:
            overridden = False
            if method == "POST" and "x-http-method-override" in headers:
                # googleapiclient turns a GET with a URI over 2048 chars into this.
                form = self._read_body()
                method = headers["x-http-method-override"].upper()
                query.update(parse_qsl(form.decode(), keep_blank_values=True))
                record.query = query
                overridden = True
            route = self._route(method, path, query)
            record.kind = route[0]
            if route[0] in ("chunk", "status"):
                return self._session_put(route[1], query)
            body = b"" if overridden else self._read_body()
            self._check_auth()
            with state.lock:
                fault = state._fault_for(route[0])
            if fault:
                raise self._fault_error(fault)
            return self._dispatch(route, method, query, body)
        except DriveError as err:
            self._error(err)
        except _Dropped:
            raise
        except (ConnectionError, TimeoutError):
            self.close_connection = True
            raise
        except Exception as exc:  # a bug in the stand-in: say so loudly, answer 500, hang up
            traceback.print_exc()
            self.close_connection = True
            self._error(DriveError(500, f"Stand-in bug: {exc!r}", "internalError"))

    def _fault_error(self, fault: _Fault) -> DriveError:
        messages = {
            503: "Service Unavailable",
            500: "Internal Error",
            429: "Rate Limit Exceeded",
            403: "User rate limit exceeded.",
        }
        reason = "userRateLimitExceeded" if fault.status == 403 else None
        return DriveError(
            fault.status,
            fault.message or messages.get(fault.status, "Injected failure"),
            reason,
            headers=fault.headers,
        )

    def _check_auth(self) -> None:
        token = self.server_state.token
        if token is None:
            return
        got = self.headers.get("Authorization")
        if got is None:
            raise DriveError(
                401,
                "Request is missing required authentication credential. Expected OAuth 2 "
                "access token, login cookie or other valid authentication credential.",
                "required",
                location="Authorization",
                location_type="header",
                headers={"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/"'},
            )
        if got != f"Bearer {token}":
            raise DriveError(
                401,
                "Request had invalid authentication credentials. Expected OAuth 2 access "
                "token, login cookie or other valid authentication credential.",
                "authError",
                location="Authorization",
                location_type="header",
                headers={
                    "WWW-Authenticate": 'Bearer realm="https://accounts.google.com/", '
                    'error="invalid_token"'
                },
            )

    def _route(self, method: str, path: str, query: dict[str, str]) -> tuple[str, str | None]:
        m = re.fullmatch(r"/(upload/)?drive/v3/files(?:/([^/]+))?/?", path)
        if path.rstrip("/") == "/drive/v3/about" and method in ("GET", "HEAD"):
            return ("about", None)
        if not m:
            return ("unknown", None)
        upload, file_id = m.group(1), m.group(2)
        if upload:
            if method == "PUT" and "upload_id" in query:
                n = self._body_length()
                return ("chunk" if (n is None or n > 0) else "status", query["upload_id"])
            if (method == "POST" and file_id is None) or (method == "PATCH" and file_id):
                kind = "initiate" if query.get("uploadType") == "resumable" else "upload"
                return (kind, file_id)
            return ("unknown", None)
        if file_id is None:
            return {"GET": ("list", None), "HEAD": ("list", None), "POST": ("create", None)}.get(
                method, ("unknown", None)
            )
        if method in ("GET", "HEAD"):
            return ("download" if query.get("alt") == "media" else "get", file_id)
        return {"PATCH": ("update", file_id), "DELETE": ("delete", file_id)}.get(
            method, ("unknown", None)
        )

    def _dispatch(
        self, route: tuple[str, str | None], method: str, query: dict[str, str], body: bytes
    ) -> None:
        state = self.server_state
        kind, file_id = route
        if kind == "unknown":
            raise DriveError(404, f"Not Found: {method} {self.path}", "notFound")
        if kind == "about":
            return self._send(200, self._about(query))
        with state.lock:
            if kind == "list":
                tree = _fields_tree(query.get("fields"), DEFAULT_LIST_FIELDS, listing=True)
                return self._send(200, _select(state._list(query), tree))
            if kind == "delete":
                state._delete(file_id or "")
                return self._send(204)
            if kind in ("get", "download"):
                f = state._get(file_id or "")
                if kind == "get":
                    tree = _fields_tree(query.get("fields"), DEFAULT_FILE_FIELDS, listing=False)
                    return self._send(200, _select(state._resource(f), tree))
                return self._download(f)
            meta = self._json_body(body)
            tree = _fields_tree(query.get("fields"), DEFAULT_FILE_FIELDS, listing=False)
            if kind == "create":
                meta = state._check_metadata(meta)
                f = state._create(meta, None, _new_id())
                return self._send(200, _select(state._resource(f), tree))
            if kind == "update":
                meta = state._check_metadata(meta)
                f = state._update(state._get(file_id or ""), meta, query, None)
                return self._send(200, _select(state._resource(f), tree))
            if kind == "upload":
                return self._simple_upload(file_id, query, body, tree)
            if kind == "initiate":
                return self._initiate(file_id, query, meta)
        raise DriveError(404, "Not Found", "notFound")

    def _json_body(self, body: bytes) -> Any:
        ctype = self.headers.get("Content-Type", "")
        if not body.strip() or not ctype.startswith("application/json"):
            return {}
        try:
            return json.loads(body)
        except ValueError:
            raise DriveError(400, "Invalid JSON payload received.", "parseError") from None

    def _about(self, query: dict[str, str]) -> dict:
        if not query.get("fields"):
            raise DriveError(
                400,
                "The 'fields' parameter is required for this method.",
                "required",
                location="fields",
            )
        with self.server_state.lock:
            used = sum(len(f["bytes"] or b"") for f in self.server_state.files.values())
        about = {
            "kind": "drive#about",
            "user": {
                "kind": "drive#user",
                "displayName": "Stand-in User",
                "emailAddress": "user@example.com",
                "me": True,
                "permissionId": "00000000000000000000",
            },
            "storageQuota": {"limit": str(15 << 30), "usage": str(used)},
            "maxUploadSize": "5497558138880",
        }
        try:
            return _select(about, _parse_fields(query["fields"]))
        except ValueError:
            raise DriveError(400, "Invalid field selection", "invalidParameter") from None

    def _download(self, f: dict) -> None:
        if f["bytes"] is None:
            raise DriveError(
                403,
                "Only files with binary content can be downloaded. Use Export with Docs "
                "Editors files.",
                "fileNotDownloadable",
                location="alt",
            )
        data = f["bytes"]
        total = len(data)
        headers = {
            "Content-Type": f["mimeType"],
            "X-Goog-Hash": "md5=" + base64.b64encode(hashlib.md5(data).digest()).decode(),
            "Accept-Ranges": "bytes",
        }
        rng = self.headers.get("Range")
        m = re.fullmatch(r"\s*bytes=(\d*)-(\d*)\s*", rng or "")
        if rng is None or not m or (not m.group(1) and not m.group(2)):
            self.server_state.bytes_served += total
            return self._send(200, data, headers)
        if m.group(1):
            start = int(m.group(1))
            end = min(int(m.group(2)), total - 1) if m.group(2) else total - 1
        else:  # suffix: the last N bytes
            start, end = max(total - int(m.group(2)), 0), total - 1
        if start >= total or end < start:
            raise DriveError(
                416,
                "Request range not satisfiable",
                "requestedRangeNotSatisfiable",
                headers={"Content-Range": f"bytes */{total}"},
            )
        headers["Content-Range"] = f"bytes {start}-{end}/{total}"
        self.server_state.bytes_served += end - start + 1
        return self._send(206, data[start : end + 1], headers)

    # ------------------------------------------------------------------ uploads

    def _simple_upload(
        self, file_id: str | None, query: dict[str, str], body: bytes, tree: dict
    ) -> None:
        state = self.server_state
        utype = query.get("uploadType")
        ctype = self.headers.get("Content-Type", "application/octet-stream")
        if utype == "media":
            meta, data, media_type = {}, body, ctype
        elif utype == "multipart":
            meta, data, media_type = self._multipart(ctype, body)
        else:
            raise DriveError(400, "Invalid uploadType.", "invalidParameter", location="uploadType")
        meta = state._check_metadata(meta)
        if file_id is None:
            meta.setdefault("mimeType", media_type)
            f = state._create(meta, data, _new_id())
        else:
            f = state._update(state._get(file_id), meta, query, data)
        state.bytes_received += len(data)
        state.wire_bytes += len(data)
        state.received_by_file[f["id"]] = state.received_by_file.get(f["id"], 0) + len(data)
        self._send(200, _select(state._resource(f), tree))

    @staticmethod
    def _multipart(ctype: str, body: bytes) -> tuple[dict, bytes, str]:
        m = re.search(r'boundary="?([^";]+)"?', ctype)
        if not m or not ctype.startswith("multipart/"):
            raise DriveError(400, "Bad multipart body.", "badContent")
        delim = b"--" + m.group(1).encode()
        parts = []
        for raw in body.split(delim)[1:]:
            if raw.startswith(b"--"):
                break
            raw = raw[2:] if raw.startswith(b"\r\n") else raw[1:] if raw.startswith(b"\n") else raw
            sep = re.search(rb"\r?\n\r?\n", raw)
            if not sep:
                raise DriveError(400, "Bad multipart body.", "badContent")
            head, content = raw[: sep.start()], raw[sep.end() :]
            if content.endswith(b"\r\n"):
                content = content[:-2]
            elif content.endswith(b"\n"):
                content = content[:-1]
            hdrs = {}
            for line in head.decode("latin-1").splitlines():
                k, _, v = line.partition(":")
                hdrs[k.strip().lower()] = v.strip()
            parts.append((hdrs, content))
        if len(parts) != 2:
            raise DriveError(400, "A multipart upload needs metadata and media.", "badContent")
        try:
            meta = json.loads(parts[0][1] or b"{}")
        except ValueError:
            raise DriveError(400, "Invalid JSON payload received.", "parseError") from None
        return meta, parts[1][1], parts[1][0].get("content-type", "application/octet-stream")

    def _initiate(self, file_id: str | None, query: dict[str, str], meta: Any) -> None:
        state = self.server_state
        meta = state._check_metadata(meta)
        size = self.headers.get("X-Upload-Content-Length")
        try:
            total = int(size) if size is not None else None
            if total is not None and total < 0:
                raise ValueError
        except ValueError:
            raise DriveError(
                400,
                "Invalid X-Upload-Content-Length.",
                "invalid",
                location="X-Upload-Content-Length",
            ) from None
        content_type = self.headers.get("X-Upload-Content-Type") or "application/octet-stream"
        if file_id is None:
            state._check_parents(meta.get("parents", []))
            file_id = _new_id()
            update = False
        else:
            state._get(file_id)
            if "parents" in meta:
                raise DriveError(
                    403,
                    "The parents field is not directly writable in update requests.",
                    "fieldNotWritable",
                )
            update = True
        tree_check = _fields_tree(query.get("fields"), DEFAULT_FILE_FIELDS, listing=False)
        del tree_check  # only validated now; applied to the answer that completes the upload
        upload_id = secrets.token_urlsafe(48)
        base = f"{state.url}/upload/drive/v3/files" + (f"/{quote(file_id)}" if update else "")
        uri = f"{base}?uploadType=resumable&upload_id={upload_id}"
        state.sessions[upload_id] = UploadSession(
            upload_id=upload_id,
            uri=uri,
            file_id=file_id,
            update=update,
            metadata=meta,
            content_type=content_type,
            total=total,
            fields=query.get("fields"),
            params={k: query[k] for k in ("addParents", "removeParents") if k in query},
        )
        self._send(200, b"", {"Location": uri, "X-GUploader-UploadID": upload_id})

    def _session_put(self, upload_id: str | None, query: dict[str, str]) -> None:
        """PUT <session URI>: a chunk (`Content-Range: bytes a-b/N`) or a status query
        (`bytes */N`, empty body). The body is always read (or the connection reset)."""
        state = self.server_state
        length = self._body_length()
        record = self.record
        assert record is not None
        with state.lock:
            session = state.sessions.get(upload_id or "")
            fault = None
            drop = None
            try:
                self._check_auth()
            except DriveError:
                session = None
                auth_failed = True
            else:
                auth_failed = False
                if record.kind == "chunk":
                    fault = state._fault_for("chunk")
                    if fault is None:
                        drop = state._drop_for()
                else:
                    fault = state._fault_for("status")
            start_offset = session.offset if session is not None else 0
        if drop is not None:
            want = drop.after_bytes if length is None else min(drop.after_bytes, length)
            part = self.rfile.read(want) if want > 0 else b""
            record.body_bytes = len(part)
            with state.lock:
                state.wire_bytes += len(part)
                rng = _content_range(self.headers.get("Content-Range"))
                if (
                    drop.keep
                    and session is not None
                    and session.done is None
                    and not session.expired
                    and rng is not None
                    and rng[0] == session.offset
                    and (session.total is None or rng[0] + len(part) <= session.total)
                ):
                    # Drive may have persisted what arrived; a whole final chunk completes
                    # the file even though its answer is lost.
                    state._accept(session, part)
                    if rng[2] is not None:
                        session.total = rng[2]
                    if session.total is not None and session.offset == session.total:
                        state._finish(session)
            self._drop()
        body = self._read_body()  # always consume what the client sent
        with state.lock:
            state.wire_bytes += len(body) if record.kind == "chunk" else 0
        if auth_failed:
            self._check_auth()  # raises the 401 again, now that the body is read
        if fault is not None:
            raise self._fault_error(fault)
        with state.lock:
            if session is None:
                raise DriveError(404, "Upload session not found.", "notFound")
            if session.expired:
                raise DriveError(
                    404,
                    "The upload session has expired or was not found; start a new upload.",
                    "notFound",
                )
            if session.done is not None:
                return self._session_done(session)
            header = self.headers.get("Content-Range")
            if header is None and body:  # whole-file PUT: bytes offset..end/offset+len
                rng = (session.offset, session.offset + len(body) - 1, session.offset + len(body))
            elif header is None:  # empty body, no range: an empty file, or finish it
                rng = (None, None, session.offset)
            else:
                rng = _content_range(header)
                if rng is None:
                    raise DriveError(
                        400,
                        "Failed to parse Content-Range header.",
                        "badContent",
                        location="Content-Range",
                        location_type="header",
                    )
            first, last, total = rng
            if first is not None and (last - first + 1 != len(body)):
                raise DriveError(
                    400,
                    f"Content-Range and Content-Length disagree ({header}, {len(body)} bytes).",
                    "badContent",
                )
            if first is None and body:
                raise DriveError(400, "A status query has no body.", "badContent")
            if total is not None:
                if total < session.offset:
                    raise DriveError(
                        400, f"The total size {total} is below the bytes received.", "badContent"
                    )
                if session.total is not None and session.total != total:
                    raise DriveError(
                        400,
                        f"The total size {total} differs from the declared size {session.total}.",
                        "badContent",
                    )
                session.total = total
            if first is not None:
                if first != session.offset or start_offset != session.offset:
                    # Not contiguous with what is held: thrown away, client resumes from Range.
                    return self._send_308(session)
                if session.total is not None and last + 1 > session.total:
                    raise DriveError(400, "Data beyond the declared size.", "badContent")
                state._accept(session, body)
            if session.total is not None and session.offset == session.total:
                state._finish(session)
                return self._session_done(session)
            return self._send_308(session)

    def _send_308(self, session: UploadSession) -> None:
        headers = {"X-GUploader-UploadID": session.upload_id}
        if session.offset > 0:
            headers["Range"] = f"bytes=0-{session.offset - 1}"
        self._send(308, b"", headers)

    def _session_done(self, session: UploadSession) -> None:
        state = self.server_state
        assert session.done is not None
        tree = _fields_tree(session.fields, DEFAULT_FILE_FIELDS, listing=False)
        self._send(200, _select(state._resource(session.done), tree))


def _content_range(header: str | None) -> tuple[int | None, int | None, int | None] | None:
    """`bytes a-b/N|*` -> (a, b, N|None); `bytes */N|*` -> (None, None, N|None); else None."""
    if header is None:
        return None
    m = re.fullmatch(r"\s*bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)\s*", header)
    if not m:
        return None
    total = None if m.group(3) == "*" else int(m.group(3))
    if m.group(1) is None:
        return (None, None, total)
    first, last = int(m.group(1)), int(m.group(2))
    if last < first:
        return None
    return (first, last, total)


# --------------------------------------------------------------------------- the client side

# What the product must replicate to talk to a Drive at another root URL (this stand-in, or a
# proxy): load the static discovery document shipped inside googleapiclient and point ALL of its
# root URLs there, then build from the document. `client_options={"api_endpoint": ...}` alone is
# NOT enough: media uploads are built from `rootUrl` ("<rootUrl>upload/drive/v3/files"), and
# `_fix_up_media_path_base_url` then only swaps the host:port, keeping the https scheme.


def drive_discovery_document(root_url: str) -> dict:
    """The Drive v3 discovery document googleapiclient ships, with its root URLs at `root_url`."""
    from googleapiclient.discovery_cache import get_static_doc

    text = get_static_doc("drive", "v3")
    if text is None:
        raise RuntimeError("googleapiclient ships no static drive v3 discovery document")
    doc = json.loads(text)
    root = root_url.rstrip("/") + "/"
    doc["rootUrl"] = root  # API calls: rootUrl + servicePath; uploads: rootUrl + "upload/" + ...
    doc["mtlsRootUrl"] = root  # used instead when GOOGLE_API_USE_MTLS_ENDPOINT=always
    doc["baseUrl"] = root + doc["servicePath"]  # informational; the client derives its own
    return doc


def build_http_for(token: str | None) -> Any:
    """The transport: googleapiclient's own `build_http()` (it un-registers 308 as a redirect,
    which resumable uploads need) wrapped in google-auth's AuthorizedHttp with a bare access
    token. `refresh_status_codes=()`: a token without a refresh token cannot be refreshed, and
    without this a 401 surfaces as google.auth RefreshError instead of HttpError 401."""
    from googleapiclient.http import build_http

    http = build_http()
    if token is None:
        return http
    import google_auth_httplib2
    from google.oauth2.credentials import Credentials

    return google_auth_httplib2.AuthorizedHttp(
        Credentials(token), http=http, refresh_status_codes=()
    )


def build_service(url: str, token: str | None) -> Any:
    """A Drive v3 service whose every request (API calls and media uploads) goes to `url`.

    PRODUCT RECIPE (replicate exactly):
        doc = json.loads(googleapiclient.discovery_cache.get_static_doc("drive", "v3"))
        doc["rootUrl"] = doc["mtlsRootUrl"] = url.rstrip("/") + "/"
        service = googleapiclient.discovery.build_from_document(doc, http=<AuthorizedHttp>)
    where http = AuthorizedHttp(Credentials(token), http=googleapiclient.http.build_http(),
    refresh_status_codes=()) (see `build_http_for`). Passing `credentials=Credentials(token)`
    instead of `http` also works for requests, but then a 401 raises google.auth's RefreshError.
    """
    from googleapiclient.discovery import build_from_document

    return build_from_document(drive_discovery_document(url), http=build_http_for(token))
