"""A stand-in for the Hugging Face Hub's file-download protocol, on 127.0.0.1, for tests.

It serves folders as model repos the way `huggingface_hub.hf_hub_download` (and so transformers'
`from_pretrained`) asks for files: `HEAD`/`GET /{repo_id}/resolve/{revision}/{path}`, answering
with `X-Repo-Commit`, `ETag` and `Content-Length`, and 404 with `X-Error-Code: EntryNotFound`
(or `RepoNotFound`) as the Hub does. Every request is logged so tests can see what was fetched.
It stops on `close()` or, at the latest, after `lifetime` seconds.
"""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class HubStandIn:
    def __init__(self, repos: dict[str, Path], lifetime: float = 600.0) -> None:
        self.repos = {k: Path(v) for k, v in repos.items()}
        self.requests: list[tuple[str, str]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _answer(self, body: bool) -> None:
                path = unquote(self.path.split("?", 1)[0])
                outer.requests.append((self.command, path))
                if path.startswith("/api/models/"):
                    return self._api(
                        path.removeprefix("/api/models/"), "recursive=true" in self.path
                    )
                parts = path.lstrip("/").split("/")
                if "resolve" not in parts:
                    return self._error(404, "RepoNotFound")
                i = parts.index("resolve")
                repo, rel = "/".join(parts[:i]), "/".join(parts[i + 2 :])
                root = outer.repos.get(repo)
                if root is None:
                    return self._error(404, "RepoNotFound")
                f = (root / rel).resolve()
                if root.resolve() not in f.parents or not f.is_file():
                    return self._error(404, "EntryNotFound")
                data = f.read_bytes()
                self.send_response(200)
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("ETag", '"' + hashlib.sha256(data).hexdigest() + '"')
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Content-Type", "application/octet-stream")
                self.end_headers()
                if body:
                    self.wfile.write(data)

            def _json(self, obj: object) -> None:
                data = json.dumps(obj).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _api(self, rest: str, recursive: bool) -> None:
                """`/api/models/{repo}/tree/{rev}/{path}` and `/api/models/{repo}/revision/{rev}`."""
                for word in ("/tree/", "/revision/"):
                    if word in rest:
                        repo, tail = rest.split(word, 1)
                        break
                else:
                    repo, tail, word = rest.rstrip("/"), "", "/revision/"
                root = outer.repos.get(repo)
                if root is None:
                    return self._error(404, "RepoNotFound")
                files = sorted(p for p in root.rglob("*") if p.is_file())
                if word == "/revision/":
                    siblings = [{"rfilename": p.relative_to(root).as_posix()} for p in files]
                    return self._json({"id": repo, "sha": COMMIT, "siblings": siblings})
                sub = tail.split("/", 1)[1] if "/" in tail else ""
                base = (root / sub).resolve()
                if not base.is_dir() or (
                    base != root.resolve() and root.resolve() not in base.parents
                ):
                    return self._error(404, "EntryNotFound")
                found = base.rglob("*") if recursive else base.iterdir()
                entries = []
                for p in sorted(found):
                    rel = p.relative_to(root).as_posix()
                    if p.is_dir():
                        entries.append({"type": "directory", "oid": COMMIT, "path": rel})
                    else:
                        entries.append(
                            {"type": "file", "oid": COMMIT, "size": p.stat().st_size, "path": rel}
                        )
                return self._json(entries)

            def _error(self, code: int, kind: str) -> None:
                msg = f"{kind}".encode()
                self.send_response(code)
                self.send_header("X-Error-Code", kind)
                self.send_header("X-Error-Message", kind)
                self.send_header("Content-Length", str(len(msg)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(msg)

            def do_HEAD(self) -> None:  # noqa: N802
                self._answer(body=False)

            def do_GET(self) -> None:  # noqa: N802
                self._answer(body=True)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()
        self._timer = threading.Timer(lifetime, self.close)
        self._timer.daemon = True
        self._timer.start()

    def fetched(self) -> list[str]:
        return [p for m, p in self.requests if m == "GET"]

    def close(self) -> None:
        self._timer.cancel()
        self.server.shutdown()
        self.server.server_close()
