"""A stand-in for the Hugging Face Hub on 127.0.0.1, for tests: downloads, uploads, listings.

It speaks the HTTP endpoints that huggingface_hub's own client calls (checked against
huggingface_hub 2.4.0 with `HF_HUB_DISABLE_XET=1`, i.e. the plain git-LFS "basic" transfer):

read
  HEAD/GET  /{repo}/resolve/{rev}/{path}             file bytes; `X-Repo-Commit`, `ETag` (git blob
                                                     id, or the sha256 for LFS files, which also get
                                                     `X-Linked-Etag`/`X-Linked-Size`), `Range`
  GET  /api/models/{repo}[/revision/{rev}]           repo info (`?blobs=true`: sizes, blob ids, lfs)
  GET  /api/models/{repo}/tree/{rev}[/{path}]        listing (`recursive`, `expand`; `Link` pages)
  POST /api/models/{repo}/paths-info/{rev}           those paths (form: paths=...&expand=...)
  GET  /api/models/{repo}/refs, /commits/{rev}       branches; history
  GET  /api/whoami-v2                                the token's user
write
  POST   /api/repos/create, DELETE /api/repos/delete  (409 + JSON `url` when it exists)
  POST   /api/validate-yaml                          always valid
  POST   /api/models/{repo}/preupload/{rev}          "lfs" or "regular" per file, and the remote oid
  POST   /{repo}.git/info/lfs/objects/batch          LFS batch API, "basic" transfer: an upload href
                                                     on this server, or no action when the repo
                                                     already has the object
  PUT    /lfs-upload/{repo}/{sha256}?sig=...         the bytes (a presigned URL: no token needed)
  POST   /{repo}.git/info/lfs/objects/verify         the upload landed, with that size
  POST   /api/models/{repo}/commit/{rev}             NDJSON: header, file, lfsFile, deletedFile,
                                                     deletedFolder; a new commit sha

Upload mode (what preupload answers): "lfs" when the file matches a `filter=lfs` pattern of the
repo's `.gitattributes` at that revision (a created repo starts, as on the Hub, with one commit
holding a default `.gitattributes`: *.safetensors, *.bin, *.pt, *.pth, *.model, *.h5, archives...;
a folder-served repo without one uses the same defaults), or is larger than `lfs_threshold`
(10 MiB by default, the Hub's limit for plain git files), or looks binary (a NUL byte in the
512-byte sample the client sends); otherwise "regular". Empty files are always "regular".

Listing fields, as the Hub sends them: a file is `{"type": "file", "oid", "size", "path"}` plus
`"lfs": {"oid": sha256, "size", "pointerSize"}` for LFS files. `oid` is git's blob id,
sha1(b"blob %d\\0" + data), of what git stores: the content for a regular file, the LFS pointer
text for an LFS file (as on the Hub; the sha256 of the content is `lfs.oid`). Folders are
`{"type": "directory", "oid", "path"}`. With `expand=true` entries also carry `lastCommit`
(`id`, `title`, `date`) and files `securityFileStatus`. Repo info `siblings` are `{"rfilename"}`,
plus with `?blobs=true` `size`, `blobId` and `lfs: {"sha256", "size", "pointerSize"}`.

Auth: with `token=...` every request needs `Authorization: Bearer <token>` (the LFS PUT instead
carries the signature of its presigned URL). No header: 401, `X-Error-Code: RepoNotFound` on repo
URLs (the client raises `RepositoryNotFoundError`, as for a private repo on the Hub); another
token: 401 "Invalid credentials in Authorization header" (a plain `HfHubHTTPError`, "Invalid user
token." from `whoami`). Without `token`, any bearer token is accepted, writes need one, and a
private repo is answered 401 RepoNotFound to requests without one.

For tests: `fail_next(method, path_substring, status, times)` answers the next matching requests
with that status; `corrupt(repo, path)` changes stored bytes; `bytes_received` counts PUT body
bytes (every PUT read, an injected failure's too); `requests` logs (method, path). Folder repos
given to the constructor are read live from disk (commit `COMMIT`), never written: commits go to
memory. Model repos only. Other routes get 404, the client's best-effort `/api/agent-harnesses`
fetch among them (answering it would make the client cache it under the real HF_HOME, which
tests/conftest.py does not redirect). Binds 127.0.0.1; stops on `close()` or after `lifetime`
seconds.

What huggingface_hub 2.4.0 retries (http_backoff: 408, 429, 5xx, up to 5 times, waiting 1 s, 2 s,
... so each injected failure costs about a second): preupload, the LFS batch, the PUT, verify and
tree pages; a download's failed HEAD is asked again at once when nothing is cached. Not retried:
the commit POST, create_repo, repo/model info, paths-info, whoami and the download's GET (only
408/429 are).
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import hmac
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote

COMMIT = "0123456789abcdef0123456789abcdef01234567"

# `filter=lfs` patterns of the .gitattributes a new repo gets (after the Hub's default one)
DEFAULT_GITATTRIBUTES = "".join(
    f"{p} filter=lfs diff=lfs merge=lfs -text\n"
    for p in (
        "*.7z *.arrow *.bin *.bz2 *.ckpt *.ftz *.gz *.h5 *.joblib *.lfs.* *.mlmodel *.model"
        " *.msgpack *.npy *.npz *.onnx *.ot *.parquet *.pb *.pickle *.pkl *.pt *.pth *.rar"
        " *.safetensors saved_model/**/* *.tar.* *.tar *.tflite *.tgz *.wasm *.xz *.zip *.zst"
        " *tfevents*"
    ).split()
)
AUTH_MISSING = "Invalid username or password."
AUTH_WRONG = "Invalid credentials in Authorization header"


def git_blob_id(data: bytes) -> str:
    """git's object id of a blob: sha1 of "blob <size>\\0" + data."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    """The pointer file git stores in place of an LFS file."""
    return (
        f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()
    )


def _now() -> str:
    t = datetime.now(UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


class HubError(Exception):
    """An error answer: status, `X-Error-Message` (and JSON `error`), optional `X-Error-Code`."""

    def __init__(self, status: int, message: str, code: str | None = None, extra=None) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.extra = status, message, code, extra or {}


@dataclass
class _Meta:
    size: int
    sha256: str
    content_oid: str  # git blob id of the content


class _Blob:
    """File content, in memory or (folder repos) on disk. `meta` is computed from the bytes
    unless given (a `corrupt(..., keep_listing=True)` blob keeps the old hashes)."""

    def __init__(self, data: bytes | None = None, path: Path | None = None, meta=None) -> None:
        self.data, self.path, self._meta, self._stat = data, path, meta, None

    def read(self) -> bytes:
        return self.data if self.data is not None else self.path.read_bytes()

    def sample(self) -> bytes:
        if self.data is not None:
            return self.data[:512]
        with open(self.path, "rb") as f:
            return f.read(512)

    @property
    def meta(self) -> _Meta:
        if self.path is not None and self.data is None:
            st = self.path.stat()
            if self._stat != (st.st_size, st.st_mtime_ns):
                self._meta, self._stat = None, (st.st_size, st.st_mtime_ns)
        if self._meta is None:
            data = self.read()
            self._meta = _Meta(len(data), hashlib.sha256(data).hexdigest(), git_blob_id(data))
        return self._meta


@dataclass
class _Entry:
    blob: _Blob
    lfs: bool
    last_commit: str

    def oid(self) -> str:
        m = self.blob.meta
        return git_blob_id(lfs_pointer(m.sha256, m.size)) if self.lfs else m.content_oid

    def remote_oid(self) -> str:
        """What preupload reports: the sha256 for LFS files, the git blob id for others."""
        return self.blob.meta.sha256 if self.lfs else self.blob.meta.content_oid


@dataclass
class _Commit:
    sha: str
    parent: str | None
    title: str
    message: str
    date: str
    files_: dict[str, _Entry] | None = None
    live_root: Path | None = None  # a folder repo's commit: its files are read from disk
    lfs_rule: object = None

    @property
    def files(self) -> dict[str, _Entry]:
        if self.live_root is None:
            return self.files_
        root = self.live_root
        out: dict[str, _Entry] = {}
        paths = sorted(p for p in root.rglob("*") if p.is_file())
        attrs = root / ".gitattributes"
        patterns = _lfs_patterns(attrs.read_text() if attrs.is_file() else DEFAULT_GITATTRIBUTES)
        for p in paths:
            rel = p.relative_to(root).as_posix()
            blob = _Blob(path=p)
            size = p.stat().st_size
            out[rel] = _Entry(blob, self.lfs_rule(rel, size, blob.sample(), patterns), self.sha)
        return out

    def materialize(self) -> None:
        if self.live_root is not None:
            self.files_, self.live_root = self.files, None


@dataclass
class _Repo:
    id: str
    private: bool
    created: str
    branches: dict[str, str] = field(default_factory=dict)
    commits: dict[str, _Commit] = field(default_factory=dict)
    lfs: dict[str, _Blob] = field(default_factory=dict)  # sha256 -> uploaded object

    def resolve(self, rev: str) -> _Commit:
        sha = self.branches.get(rev, rev)
        if sha not in self.commits:
            raise HubError(404, f"Invalid rev id: {rev}", "RevisionNotFound")
        return self.commits[sha]


def _lfs_patterns(gitattributes: str) -> list[str]:
    out = []
    for line in gitattributes.splitlines():
        parts = line.split()
        if parts and not parts[0].startswith("#") and "filter=lfs" in parts[1:]:
            out.append(parts[0])
    return out


def _matches(pattern: str, path: str) -> bool:
    """gitattributes-style match: a pattern without '/' matches the file name anywhere."""
    if "/" not in pattern.strip("/"):
        return fnmatch.fnmatchcase(path.rsplit("/", 1)[-1], pattern)
    p = pattern.lstrip("/")
    return fnmatch.fnmatchcase(path, p) or fnmatch.fnmatchcase(path, p.replace("**/", ""))


@dataclass
class _Fault:
    method: str
    substring: str
    status: int
    times: int


class HubStandIn:
    def __init__(
        self,
        repos: dict[str, Path],
        lifetime: float = 600.0,
        *,
        token: str | None = None,
        user: str = "stand-in-user",
        lfs_threshold: int = 10 * 1024 * 1024,
        tree_page_size: int = 1000,
    ) -> None:
        """Serve `repos` ({repo_id: folder}, public, read live from disk) and accept new ones.

        token: when set, the only accepted `Authorization: Bearer` token. user: whoami's name and
        the namespace of repos created without one. lfs_threshold: files larger than this are
        uploaded through LFS. tree_page_size: tree entries per page (the rest follows `Link`).
        """
        self.repos = {k: Path(v) for k, v in repos.items()}
        self.token = token
        self.user = user
        self.lfs_threshold = lfs_threshold
        self.tree_page_size = tree_page_size
        self.requests: list[tuple[str, str]] = []
        self.ranges: list[tuple[str, str]] = []  # (file path, Range header) of each download
        self.bytes_received = 0
        self.injected: list[tuple[str, str, int]] = []  # answered by `fail_next`
        self._faults: list[_Fault] = []
        self._lock = threading.RLock()
        self._secret = secrets.token_bytes(16)
        self._counter = 0
        self._repos: dict[str, _Repo] = {}
        for repo_id, folder in self.repos.items():
            repo = _Repo(repo_id, private=False, created=_now())
            repo.commits[COMMIT] = _Commit(
                COMMIT, None, "initial commit", "", repo.created, None, folder, self._wants_lfs
            )
            repo.branches["main"] = COMMIT
            self._repos[repo_id] = repo

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        self._timer = threading.Timer(lifetime, self.close)
        self._timer.daemon = True
        self._timer.start()

    # --- for tests ---------------------------------------------------------------------------

    def fetched(self) -> list[str]:
        return [p for m, p in self.requests if m == "GET"]

    def fail_next(self, method: str, path_substring: str, status: int = 503, times: int = 1):
        """Answer the next `times` requests whose method is `method` and whose (unquoted) path
        contains `path_substring` with `status` (body and headers read first, nothing stored)."""
        with self._lock:
            self._faults.append(_Fault(method.upper(), path_substring, status, times))

    def corrupt(
        self,
        repo: str,
        path: str,
        *,
        revision: str = "main",
        offset: int | None = None,
        keep_listing: bool = False,
    ) -> None:
        """Flip one byte (at `offset`, default the middle) of `path` as stored at `revision`,
        in place: same commit sha, same size, no new commit.

        By default everything the server reports is computed from the stored bytes, so the
        listing, paths-info, preupload oid and download ETag show the new content, like a silent
        server-side change. The original LFS object stays in the repo's LFS store (other commits
        may use it), so re-committing the original content needs no upload, as on the Hub.
        `keep_listing=True` instead keeps the old size/sha256/oid everywhere (bit rot behind a
        stale index): only the downloaded bytes differ, which only a client hashing them sees.
        """
        with self._lock:
            commit = self._repo(repo).resolve(revision)
            commit.materialize()
            entry = commit.files_.get(path)
            if entry is None:
                raise KeyError(f"{repo}: no {path} at {revision}")
            data = bytearray(entry.blob.read())
            if not data:
                raise ValueError(f"{repo}/{path} is empty: nothing to corrupt")
            i = len(data) // 2 if offset is None else offset
            data[i] ^= 0xFF
            blob = _Blob(bytes(data), meta=entry.blob.meta if keep_listing else None)
            commit.files_[path] = _Entry(blob, entry.lfs, entry.last_commit)
            if entry.lfs and not keep_listing:
                self._repo(repo).lfs.setdefault(blob.meta.sha256, blob)

    def files(self, repo: str, revision: str = "main") -> dict[str, bytes]:
        """The stored content of every file of `repo` at `revision`."""
        with self._lock:
            return {p: e.blob.read() for p, e in self._repo(repo).resolve(revision).files.items()}

    def head(self, repo: str, branch: str = "main") -> str:
        with self._lock:
            return self._repo(repo).branches[branch]

    def is_private(self, repo: str) -> bool:
        return self._repo(repo).private

    def close(self) -> None:
        self._timer.cancel()
        self.server.shutdown()
        self.server.server_close()

    # --- state -------------------------------------------------------------------------------

    def _repo(self, repo_id: str) -> _Repo:
        repo = self._repos.get(repo_id)
        if repo is None:
            raise HubError(404, "Repository not found", "RepoNotFound")
        return repo

    def _wants_lfs(self, path: str, size: int, sample: bytes, patterns: list[str]) -> bool:
        if size == 0:
            return False
        return (
            size > self.lfs_threshold or b"\0" in sample or any(_matches(p, path) for p in patterns)
        )

    def _patterns_at(self, commit: _Commit) -> list[str]:
        attrs = commit.files.get(".gitattributes")
        return _lfs_patterns(attrs.blob.read().decode() if attrs else DEFAULT_GITATTRIBUTES)

    def _new_sha(self, *parts: str) -> str:
        self._counter += 1
        seed = "\n".join((*parts, str(self._counter), str(time.time_ns()))).encode()
        return hashlib.sha1(seed).hexdigest()

    def _sign(self, repo: str, oid: str) -> str:
        return hmac.new(self._secret, f"{repo}\n{oid}".encode(), hashlib.sha256).hexdigest()

    def _add_commit(self, repo: _Repo, branch: str, title: str, message: str, files) -> _Commit:
        parent = repo.branches.get(branch)
        sha = self._new_sha(repo.id, parent or "", title)
        for entry in files.values():
            if entry.last_commit is None:
                entry.last_commit = sha
        commit = _Commit(sha, parent, title, message, _now(), files)
        repo.commits[sha] = commit
        repo.branches[branch] = sha
        return commit

    # --- HTTP --------------------------------------------------------------------------------

    def _handler_class(self):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_HEAD(self) -> None:  # noqa: N802
                hub._serve(self)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD  # noqa: N815

        return Handler

    def _serve(self, h: BaseHTTPRequestHandler) -> None:
        raw_path, _, query = h.path.partition("?")
        path = unquote(raw_path)
        with self._lock:
            self.requests.append((h.command, path))
        body = _read_body(h)
        if h.command == "PUT":
            with self._lock:
                self.bytes_received += len(body)
        try:
            with self._lock:
                self._inject(h.command, path)
                status, payload, headers = self._route(h, raw_path, parse_qs(query), body)
        except HubError as e:
            status, headers = e.status, {"X-Error-Message": e.message}
            if e.code:
                headers["X-Error-Code"] = e.code
            payload = {"error": e.message, **e.extra}
        except Exception as e:  # a bug in the stand-in: say so instead of hanging up
            status, headers, payload = 500, {"X-Error-Message": repr(e)}, {"error": repr(e)}
        if isinstance(payload, bytes):
            data = payload
            headers.setdefault("Content-Type", "application/octet-stream")
        else:
            data = json.dumps(payload).encode()
            headers.setdefault("Content-Type", "application/json")
        h.send_response(status)
        headers.setdefault("Content-Length", str(len(data)))
        headers.setdefault("X-Request-Id", secrets.token_hex(8))
        for k, v in headers.items():
            h.send_header(k, v)
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(data)

    def _inject(self, method: str, path: str) -> None:
        for fault in self._faults:
            if fault.times > 0 and fault.method == method and fault.substring in path:
                fault.times -= 1
                self.injected.append((method, path, fault.status))
                raise HubError(fault.status, f"injected failure ({fault.status})")

    def _auth(self, h, repo: _Repo | None, write: bool, repo_scoped: bool = True) -> None:
        """Raise the Hub's 401 unless the request may go on."""
        value = h.headers.get("Authorization", "")
        given = value[7:].strip() if value.lower().startswith("bearer ") else None
        code = "RepoNotFound" if repo_scoped else None
        if self.token is not None:
            if given is None:
                raise HubError(401, AUTH_MISSING, code)
            if not hmac.compare_digest(given.encode(), self.token.encode()):
                raise HubError(401, AUTH_WRONG)
        elif given is None and (write or (repo is not None and repo.private)):
            raise HubError(401, AUTH_MISSING, code)

    def _route(self, h, raw_path: str, query: dict, body: bytes):
        segs = [unquote(s) for s in raw_path.strip("/").split("/")]
        method = h.command
        flag = lambda name: query.get(name, [""])[-1].lower() in ("1", "true")  # noqa: E731
        presigned = segs[0] == "lfs-upload" and method == "PUT"
        if self.token is not None and not presigned:
            account = segs[:1] == ["api"] and segs[1:2] in (["whoami-v2"], ["repos"])
            self._auth(h, None, write=False, repo_scoped=not account)
        if presigned:
            return self._lfs_put(h, segs[1:], query, body)
        if segs[0] == "api":
            if segs[1:] == ["whoami-v2"] and method in ("GET", "HEAD"):
                self._auth(h, None, write=True, repo_scoped=False)
                return 200, self._whoami(), {}
            if segs[1:] == ["repos", "create"] and method == "POST":
                self._auth(h, None, write=True, repo_scoped=False)
                return self._create(_json(body))
            if segs[1:] == ["repos", "delete"] and method == "DELETE":
                self._auth(h, None, write=True, repo_scoped=False)
                return self._delete(_json(body))
            if segs[1:] == ["validate-yaml"] and method == "POST":
                return 200, {"errors": [], "warnings": []}, {}
            if len(segs) > 2 and segs[1] in ("datasets", "spaces"):
                raise HubError(404, "the stand-in Hub serves model repos only", "RepoNotFound")
            if len(segs) > 2 and segs[1] == "models":
                repo, rest = self._split_repo(segs[2:])
                write = method != "GET" and rest[:1] in (["preupload"], ["commit"])
                self._auth(h, repo, write)
                return self._api(method, repo, rest, query, body, flag)
            raise HubError(404, f"no such route: {method} {raw_path}")
        git = next((i for i, s in enumerate(segs) if s.endswith(".git")), None)
        if git is not None and segs[git + 1 :][:3] == ["info", "lfs", "objects"]:
            repo = self._repo("/".join(segs[: git + 1])[:-4])
            self._auth(h, repo, write=True)
            action = segs[git + 4 :]
            if action == ["batch"] and method == "POST":
                return self._lfs_batch(repo, _json(body))
            if action == ["verify"] and method == "POST":
                return self._lfs_verify(repo, _json(body))
            raise HubError(404, f"no such LFS route: {method} {raw_path}")
        if "resolve" in segs and method in ("GET", "HEAD"):
            repo, rest = self._split_repo(segs)
            if rest[:1] == ["resolve"] and len(rest) >= 3:
                self._auth(h, repo, write=False)
                return self._resolve(h, repo, rest[1], "/".join(rest[2:]))
        raise HubError(404, "Repository not found", "RepoNotFound")

    def _split_repo(self, segs: list[str]) -> tuple[_Repo, list[str]]:
        """Known repo id at the start of `segs` (namespace/name, or a bare name)."""
        for n in (2, 1):
            repo = self._repos.get("/".join(segs[:n]))
            if repo is not None and len(segs) >= n:
                return repo, segs[n:]
        raise HubError(404, "Repository not found", "RepoNotFound")

    # --- API ---------------------------------------------------------------------------------

    def _api(self, method, repo: _Repo, rest: list[str], query, body: bytes, flag):
        kind = rest[0] if rest else ""
        if method in ("GET", "HEAD"):
            if kind == "":
                return 200, self._info(repo, repo.resolve("main"), flag("blobs")), {}
            if kind == "revision" and len(rest) >= 2:
                commit = repo.resolve("/".join(rest[1:]))
                return 200, self._info(repo, commit, flag("blobs")), {}
            if kind == "tree" and len(rest) >= 2:
                return self._tree(repo, rest[1], "/".join(rest[2:]), query, flag)
            if kind == "refs":
                return 200, self._refs(repo), {}
            if kind == "commits" and len(rest) >= 2:
                return 200, self._commits(repo, repo.resolve(rest[1])), {}
        if method == "POST" and len(rest) >= 2:
            rev = "/".join(rest[1:])
            if kind == "preupload":
                return self._preupload(repo, rev, _json(body))
            if kind == "commit":
                if query.get("create_pr"):
                    raise HubError(400, "the stand-in Hub does not open pull requests")
                return self._commit(repo, rev, body)
            if kind == "paths-info":
                return self._paths_info(repo, repo.resolve(rev), body)
        raise HubError(404, f"no such route: {method} /api/models/{repo.id}/{'/'.join(rest)}")

    def _whoami(self) -> dict:
        return {
            "type": "user",
            "id": hashlib.sha1(self.user.encode()).hexdigest()[:24],
            "name": self.user,
            "fullname": self.user,
            "email": f"{self.user}@example.invalid",
            "emailVerified": True,
            "canPay": False,
            "isPro": False,
            "periodEnd": None,
            "avatarUrl": "",
            "orgs": [],
            "auth": {
                "type": "access_token",
                "accessToken": {"displayName": "stand-in", "role": "write", "createdAt": _now()},
            },
        }

    def _create(self, payload: dict):
        name, org = payload.get("name") or "", payload.get("organization") or self.user
        if payload.get("type", "model") != "model":
            raise HubError(400, "the stand-in Hub serves model repos only")
        ok = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")
        if not name or len(name) > 96 or not set(name) <= ok or name.startswith((".", "-")):
            raise HubError(400, f"invalid repo name {name!r}")
        repo_id = f"{org}/{name}"
        url = f"{self.url}/{repo_id}"
        if repo_id in self._repos:
            raise HubError(409, "You already created this model repo", extra={"url": url})
        # huggingface_hub 1.x+ sends "visibility"; 0.x (LAVIS's environment) sends "private"
        private = payload.get("visibility") == "private" or payload.get("private") is True
        repo = _Repo(repo_id, private, _now())
        attrs = _Entry(_Blob(DEFAULT_GITATTRIBUTES.encode()), False, None)
        self._add_commit(repo, "main", "initial commit", "", {".gitattributes": attrs})
        self._repos[repo_id] = repo
        return 200, {"url": url, "name": repo_id, "id": self._new_sha(repo_id)[:24]}, {}

    def _delete(self, payload: dict):
        repo_id = f"{payload.get('organization') or self.user}/{payload.get('name')}"
        self._repo(repo_id)
        del self._repos[repo_id]
        self.repos.pop(repo_id, None)
        return 200, {}, {}

    def _file_json(self, path: str, entry: _Entry, expand: bool, repo: _Repo) -> dict:
        m = entry.blob.meta
        out = {"type": "file", "oid": entry.oid(), "size": m.size, "path": path}
        if entry.lfs:
            pointer = len(lfs_pointer(m.sha256, m.size))
            out["lfs"] = {"oid": m.sha256, "size": m.size, "pointerSize": pointer}
        if expand:
            out["lastCommit"] = self._last_commit(repo, entry.last_commit)
            out["securityFileStatus"] = {
                "status": "safe",
                "avScan": {"virusFound": False, "virusNames": None},
                "pickleImportScan": None,
            }
        return out

    def _folder_json(self, path: str, files: dict[str, _Entry], expand: bool, repo) -> dict:
        inside = sorted((p, e) for p, e in files.items() if p.startswith(path + "/"))
        tree_id = hashlib.sha1("".join(f"{p}\0{e.oid()}\n" for p, e in inside).encode())
        out = {"type": "directory", "oid": tree_id.hexdigest(), "path": path}
        if expand:
            last = max((repo.commits[e.last_commit] for _, e in inside), key=lambda c: c.date)
            out["lastCommit"] = self._last_commit(repo, last.sha)
        return out

    def _last_commit(self, repo: _Repo, sha: str) -> dict:
        c = repo.commits[sha]
        return {"id": c.sha, "title": c.title, "date": c.date}

    def _tree(self, repo: _Repo, rev: str, sub: str, query, flag):
        commit = repo.resolve(rev)
        files = commit.files
        sub = sub.strip("/")
        prefix = sub + "/" if sub else ""
        if sub and not any(p.startswith(prefix) for p in files):
            raise HubError(404, f"{sub} does not exist on {rev}", "EntryNotFound")
        recursive, expand = flag("recursive"), flag("expand")
        found: dict[str, bool] = {}  # path -> is a file
        for p in files:
            if not p.startswith(prefix):
                continue
            parts = p[len(prefix) :].split("/")
            for i in range(1, len(parts)):
                if recursive or i == 1:
                    found.setdefault(prefix + "/".join(parts[:i]), False)
            if recursive or len(parts) == 1:
                found[p] = True
        order = sorted(found)
        start = int(query.get("cursor", ["0"])[-1] or 0)
        page = order[start : start + self.tree_page_size]
        entries = [
            self._file_json(p, files[p], expand, repo)
            if found[p]
            else self._folder_json(p, files, expand, repo)
            for p in page
        ]
        headers = {}
        if start + self.tree_page_size < len(order):
            q = f"recursive={str(recursive).lower()}&expand={str(expand).lower()}"
            nxt = f"{self.url}/api/models/{repo.id}/tree/{quote(rev, safe='')}"
            nxt += ("/" + quote(sub, safe="") if sub else "") + f"?{q}&cursor={start + len(page)}"
            headers["Link"] = f'<{nxt}>; rel="next"'
        return 200, entries, headers

    def _paths_info(self, repo: _Repo, commit: _Commit, body: bytes):
        try:
            form = json.loads(body)
            paths, expand = form.get("paths", []), bool(form.get("expand"))
        except ValueError:
            form = parse_qs(body.decode())
            paths = form.get("paths", [])
            expand = form.get("expand", [""])[-1].lower() in ("1", "true")
        files = commit.files
        out = []
        for p in paths:
            p = p.strip("/")
            if p in files:
                out.append(self._file_json(p, files[p], expand, repo))
            elif any(f.startswith(p + "/") for f in files):
                out.append(self._folder_json(p, files, expand, repo))
        return 200, out, {}

    def _info(self, repo: _Repo, commit: _Commit, blobs: bool) -> dict:
        siblings = []
        used = 0
        for p, e in sorted(commit.files.items()):
            s = {"rfilename": p}
            if blobs:
                m = e.blob.meta
                s.update(size=m.size, blobId=e.oid())
                if e.lfs:
                    pointer = len(lfs_pointer(m.sha256, m.size))
                    s["lfs"] = {"sha256": m.sha256, "size": m.size, "pointerSize": pointer}
            siblings.append(s)
            used += e.blob.meta.size if blobs else 0
        author = repo.id.split("/")[0] if "/" in repo.id else None
        info = {
            "_id": hashlib.sha1(repo.id.encode()).hexdigest()[:24],
            "id": repo.id,
            "modelId": repo.id,
            "author": author,
            "sha": commit.sha,
            "lastModified": commit.date,
            "createdAt": repo.created,
            "private": repo.private,
            "gated": False,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "siblings": siblings,
            "spaces": [],
        }
        if blobs:
            info["usedStorage"] = used
        return info

    def _refs(self, repo: _Repo) -> dict:
        branches = [
            {"name": b, "ref": f"refs/heads/{b}", "targetCommit": sha}
            for b, sha in sorted(repo.branches.items())
        ]
        return {"branches": branches, "converts": [], "tags": [], "pullRequests": []}

    def _commits(self, repo: _Repo, commit: _Commit) -> list[dict]:
        out = []
        c: _Commit | None = commit
        while c is not None:
            out.append(
                {
                    "id": c.sha,
                    "title": c.title,
                    "message": c.message,
                    "authors": [{"user": self.user}],
                    "date": c.date,
                }
            )
            c = repo.commits.get(c.parent) if c.parent else None
        return out

    def _preupload(self, repo: _Repo, rev: str, payload: dict):
        commit = repo.resolve(rev)
        files = commit.files
        patterns = self._patterns_at(commit)
        ignore = [
            ln.strip()
            for ln in (payload.get("gitIgnore") or "").splitlines()
            if ln.strip() and not ln.strip().startswith(("#", "!"))
        ]
        out = []
        for f in payload.get("files", []):
            path, size = f["path"], int(f["size"])
            sample = base64.b64decode(f.get("sample", ""))
            lfs = self._wants_lfs(path, size, sample, patterns)
            item = {
                "path": path,
                "uploadMode": "lfs" if lfs else "regular",
                "shouldIgnore": any(_matches(p.rstrip("/"), path) for p in ignore),
            }
            if path in files:
                item["oid"] = files[path].remote_oid()
            out.append(item)
        return 200, {"files": out, "commitOid": commit.sha}, {}

    def _lfs_batch(self, repo: _Repo, payload: dict):
        if payload.get("operation") != "upload":
            raise HubError(422, "the stand-in Hub only takes LFS uploads")
        if "basic" not in payload.get("transfers", ["basic"]):
            raise HubError(422, "the stand-in Hub only speaks the basic LFS transfer")
        if payload.get("ref") and payload["ref"].get("name"):
            repo.resolve(payload["ref"]["name"])
        objects = []
        for obj in payload.get("objects", []):
            oid, size = obj.get("oid"), obj.get("size")
            item = {"oid": str(oid), "size": size if isinstance(size, int) else -1}
            valid = isinstance(oid, str) and len(oid) == 64 and set(oid) <= set("0123456789abcdef")
            if not valid or not isinstance(size, int) or size < 0:
                item["error"] = {"code": 422, "message": "invalid oid or size"}
            elif oid in repo.lfs and repo.lfs[oid].meta.size == size:
                item["authenticated"] = True  # the repo has it: no action, nothing to send
            else:
                href = f"{self.url}/lfs-upload/{repo.id}/{oid}?sig={self._sign(repo.id, oid)}"
                verify = f"{self.url}/{repo.id}.git/info/lfs/objects/verify"
                item["authenticated"] = True
                item["actions"] = {
                    "upload": {"href": href, "expires_in": 3600},
                    "verify": {"href": verify, "expires_in": 3600},
                }
            objects.append(item)
        body = {"transfer": "basic", "objects": objects, "hash_algo": "sha256"}
        return 200, body, {"Content-Type": "application/vnd.git-lfs+json"}

    def _lfs_put(self, h, segs: list[str], query, body: bytes):
        if len(segs) < 2:
            raise HubError(404, "no such upload")
        repo_id, oid = "/".join(segs[:-1]), segs[-1]
        sig = query.get("sig", [""])[-1]
        if not hmac.compare_digest(sig, self._sign(repo_id, oid)):
            raise HubError(403, "SignatureDoesNotMatch")
        repo = self._repo(repo_id)
        if hashlib.sha256(body).hexdigest() != oid:
            raise HubError(400, "XAmzContentSHA256Mismatch: the body's sha256 is not the oid")
        repo.lfs.setdefault(oid, _Blob(body))
        return 200, b"", {"ETag": '"' + hashlib.md5(body).hexdigest() + '"'}

    def _lfs_verify(self, repo: _Repo, payload: dict):
        oid, size = payload.get("oid"), payload.get("size")
        blob = repo.lfs.get(oid)
        if blob is None or blob.meta.size != size:
            raise HubError(404, f"LFS object {oid} of size {size} not found")
        return 200, {"oid": oid, "size": size}, {}

    def _commit(self, repo: _Repo, rev: str, body: bytes):
        if rev not in repo.branches:
            raise HubError(
                404, f"Invalid rev id: {rev} (commits go to a branch)", "RevisionNotFound"
            )
        head = repo.commits[repo.branches[rev]]
        head.materialize()
        files = dict(head.files_)
        header = None
        for line in body.decode().splitlines():
            if not line.strip():
                continue
            item = json.loads(line)
            key, value = item.get("key"), item.get("value") or {}
            path = str(value.get("path", "")).strip("/")
            if key == "header":
                header = value
                parent = value.get("parentCommit")
                if parent and parent != head.sha:
                    raise HubError(
                        412, "A commit has happened since. Please refresh and try again."
                    )
            elif key == "file":
                content = value.get("content", "")
                if value.get("encoding") == "base64":
                    data = base64.b64decode(content)
                else:
                    data = content.encode()
                files[path] = _Entry(_Blob(data), False, None)
            elif key == "lfsFile":
                oid = value.get("oid")
                blob = repo.lfs.get(oid) or next(
                    (e.blob for e in files.values() if e.lfs and e.blob.meta.sha256 == oid), None
                )
                if blob is None:
                    raise HubError(400, f"LFS object {oid} for {path} was never uploaded")
                if "size" in value and value["size"] != blob.meta.size:
                    raise HubError(400, f"LFS object {oid} is not {value['size']} bytes")
                files[path] = _Entry(blob, True, None)
            elif key == "deletedFile":
                if files.pop(path, None) is None:
                    raise HubError(404, "A file with this name doesn't exist", "EntryNotFound")
            elif key == "deletedFolder":
                gone = [p for p in files if p.startswith(path + "/")]
                if not gone:
                    raise HubError(404, "A folder with this name doesn't exist", "EntryNotFound")
                for p in gone:
                    del files[p]
            else:
                raise HubError(400, f"unknown commit operation {key!r}")
        if header is None:
            raise HubError(400, "the commit has no header line")
        commit = self._add_commit(
            repo, rev, header.get("summary", ""), header.get("description", ""), files
        )
        answer = {
            "success": True,
            "commitOid": commit.sha,
            "commitUrl": f"{self.url}/{repo.id}/commit/{commit.sha}",
            "hookOutput": "",
        }
        return 200, answer, {}

    def _resolve(self, h, repo: _Repo, rev: str, path: str):
        commit = repo.resolve(rev)
        entry = commit.files.get(path)
        if entry is None:
            raise HubError(404, f"Entry not found: {path}", "EntryNotFound")
        data = entry.blob.read()
        m = entry.blob.meta
        headers = {"X-Repo-Commit": commit.sha, "Accept-Ranges": "bytes"}
        if entry.lfs:
            headers["ETag"] = headers["X-Linked-Etag"] = f'"{m.sha256}"'
            headers["X-Linked-Size"] = str(m.size)
        else:
            headers["ETag"] = f'"{entry.oid()}"'
        status = 200
        want = h.headers.get("Range", "")
        self.ranges.append((path, want))
        if want.startswith("bytes=") and "," not in want:
            first, _, last = want[6:].partition("-")
            lo = int(first) if first else max(0, len(data) - int(last))
            hi = int(last) if first and last else len(data) - 1
            if lo >= len(data):
                headers["Content-Range"] = f"bytes */{len(data)}"
                return 416, b"", headers
            headers["Content-Range"] = f"bytes {lo}-{min(hi, len(data) - 1)}/{len(data)}"
            data, status = data[lo : hi + 1], 206
        return status, data, headers


def _read_body(h: BaseHTTPRequestHandler) -> bytes:
    if "chunked" in h.headers.get("Transfer-Encoding", "").lower():
        out = bytearray()
        while True:
            size = int(h.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while h.rfile.readline().strip():
                    pass
                return bytes(out)
            out += h.rfile.read(size)
            h.rfile.readline()
    n = int(h.headers.get("Content-Length") or 0)
    return h.rfile.read(n) if n else b""


def _json(body: bytes) -> dict:
    try:
        value = json.loads(body or b"{}")
    except ValueError as e:
        raise HubError(400, f"body is not JSON: {e}") from None
    if not isinstance(value, dict):
        raise HubError(400, "body is not a JSON object")
    return value
