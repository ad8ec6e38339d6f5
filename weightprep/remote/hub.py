"""The Hugging Face Hub through huggingface_hub's own client: reach it, list a repo with its
digests, and say what a failure was.

Token and endpoint are found as huggingface_hub finds them (`HF_TOKEN` or `hf auth login`;
`HF_ENDPOINT`). huggingface_hub retries some calls itself (about 25 s for a refused
connection), so before a command's first call the endpoint is probed with one TCP connection,
retried under weightprep's own budget (`remote.retry`): a Hub that cannot be reached at all
fails in one line within that budget. The probe is skipped behind a proxy (`HTTPS_PROXY`...),
where a direct connection proves nothing.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

from weightprep.checksum import hash_file
from weightprep.errors import DiskSpaceError, InputError, one_line
from weightprep.remote.listing import Listed
from weightprep.remote.retry import retrying

T = TypeVar("T")
PROXY_VARS = ("https_proxy", "http_proxy", "all_proxy")


def git_blob_id_of(data: bytes) -> str:
    return hashlib.sha1(f"blob {len(data)}\0".encode() + data).hexdigest()


def git_blob_id(path: Path) -> str:
    return hash_file(path, ("blob",))["blob"]


def endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT.rstrip("/")


def token_source() -> str:
    from huggingface_hub import constants

    if os.environ.get("HF_TOKEN"):
        return "the HF_TOKEN environment variable"
    return f"the token file {constants.HF_TOKEN_PATH} (`hf auth login`)"


def transport_cause(exc: BaseException) -> str | None:
    """A failure to talk at all (refused, unresolvable, reset, timed out) in a few words, found
    anywhere in the exception's chain; None when the chain holds none."""
    seen: BaseException | None = exc
    while seen is not None:
        name = type(seen).__name__
        text = str(seen).lower()
        if (
            isinstance(seen, socket.gaierror)
            or "name or service not known" in text
            or ("name resolution" in text or "nodename nor servname" in text)
        ):
            return "the host name does not resolve"
        if isinstance(seen, ConnectionRefusedError) or "connection refused" in text:
            return "connection refused"
        if isinstance(seen, TimeoutError) or "timeout" in name.lower() or "timed out" in text:
            return "timed out"
        if isinstance(seen, ConnectionError) or "connection" in text and "reset" in text:
            return f"connection lost ({one_line(seen)})"
        if type(seen).__module__.split(".")[0] in ("httpx", "httpx2", "httpcore"):
            return f"{name}: {one_line(seen)}"
        seen = seen.__cause__ or (None if seen.__suppress_context__ else seen.__context__)
    return None


def classify(exc: BaseException, what: str) -> str | None:
    """The Hub's failure rules for `remote.retry`: 5xx, 408, 429 and transport errors are
    transient; 401/403, a missing repo or revision, offline mode and other 4xx fail at once."""
    from huggingface_hub.errors import (
        HfHubHTTPError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    if isinstance(exc, OfflineModeIsEnabled):
        raise InputError(f"{what}: HF_HUB_OFFLINE is set; unset it to reach the Hub") from None
    if isinstance(exc, RevisionNotFoundError):
        raise InputError(f"{what}: no such revision ({one_line(exc)})") from None
    if isinstance(exc, RepositoryNotFoundError):
        from huggingface_hub import get_token

        hint = (
            f"check the token from {token_source()}"
            if get_token()
            else "a private repo needs a token: set HF_TOKEN or run `hf auth login`"
        )
        raise InputError(f"{what}: repo not found, or not visible ({hint})") from None
    if isinstance(exc, HfHubHTTPError) and exc.response is not None:
        status = getattr(exc.response, "status_code", 0) or 0
        if status >= 500 or status in (408, 429):
            return f"the Hub answered {status} ({one_line(exc)})"
        if status in (401, 403):
            raise InputError(f"{what}: the Hub refused ({status}): {one_line(exc)}") from None
        raise InputError(f"{what}: {one_line(exc)}") from None
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:  # not the network: no retry
        raise DiskSpaceError(f"{what}: disk full ({exc})") from None
    cause = transport_cause(exc)
    if cause is None and isinstance(exc, OSError | HfHubHTTPError):
        cause = one_line(exc)
    return cause


def call(what: str, fn: Callable[[], T]) -> T:
    """`fn()` (a huggingface_hub call) under the one retry loop with the Hub's rules."""
    return retrying(what, fn, classify)


def _behind_proxy() -> bool:
    return any(os.environ.get(v) or os.environ.get(v.upper()) for v in PROXY_VARS)


def reach(what: str, hint: str = "check the network and run the command again") -> None:
    """Fail fast, in one line, when the Hub's endpoint cannot be connected to at all."""
    from huggingface_hub import constants

    quiet_client()
    if constants.HF_HUB_OFFLINE or _behind_proxy():
        return
    url = urlsplit(endpoint())
    if not url.hostname:
        raise InputError(f"HF_ENDPOINT={endpoint()!r}: not a URL")
    port = url.port or (443 if url.scheme == "https" else 80)

    def connect() -> None:
        socket.create_connection((url.hostname, port), timeout=10).close()

    def rules(exc: BaseException, _what: str) -> str | None:
        return transport_cause(exc) or (one_line(exc) if isinstance(exc, OSError) else None)

    retrying(f"{what}: cannot reach the Hub at {endpoint()}", connect, rules, hint)


def quiet_client() -> None:
    """huggingface_hub logs each of its own retries as a warning on stderr; weightprep says
    what failed itself, in one line."""
    logging.getLogger("huggingface_hub.utils._http").setLevel(logging.ERROR)


def api(what: str):
    """An `HfApi` for `what` (e.g. "hf://me/x"), once the Hub is known to be reachable."""
    from huggingface_hub import HfApi

    reach(what)
    return HfApi()


def api_and_user(what: str):
    """An authenticated `HfApi` and its user, or a one-line error naming where the token was
    looked for."""
    from huggingface_hub import get_token

    if not get_token():
        raise InputError(
            "no Hugging Face token: set HF_TOKEN or run `hf auth login` (looked in "
            f"{token_source()})"
        )
    client = api(what)

    def whoami():
        from huggingface_hub.errors import HfHubHTTPError

        try:
            return client.whoami()
        except HfHubHTTPError as exc:
            if getattr(exc.response, "status_code", None) == 401:
                raise InputError(
                    f"the Hub rejected the token from {token_source()} (401)"
                ) from None
            raise

    return client, call(f"{what}: check the token", whoami)


def listing(client, repo: str, revision: str | None) -> dict[str, Listed]:
    """Every file of `repo` at `revision` with its size, git blob id and (LFS files) sha256;
    {} for a revision or path that does not exist."""
    from huggingface_hub.errors import EntryNotFoundError, RevisionNotFoundError

    out = {}
    try:
        for item in client.list_repo_tree(repo, recursive=True, revision=revision):
            if not hasattr(item, "blob_id"):
                continue  # a folder
            lfs = getattr(item, "lfs", None)
            out[item.path] = Listed(item.size, lfs.sha256 if lfs else None, None, item.blob_id)
    except (RevisionNotFoundError, EntryNotFoundError):
        return {}
    return out


def download(
    repo: str,
    rel: str,
    revision: str,
    part: Path,
    offset: int,
    size: int,
    chunk: int,
    what: str,
    progress,
) -> int:
    """Append bytes `offset..size` of `rel` in Hub repo `repo` at commit `revision` to `part`,
    in HTTP Range requests of `chunk` bytes through huggingface_hub's own session, URL and
    headers (token, endpoint, user agent), each retried under the one budget. Returns the bytes
    downloaded. huggingface_hub's own downloads restart a file interrupted in another process
    from its first byte; this continues it from `part`'s size.
    """
    from huggingface_hub import hf_hub_url
    from huggingface_hub.utils import build_hf_headers, get_session

    from weightprep.io import faults

    url = hf_hub_url(repo, rel, revision=revision)
    headers = {**build_hf_headers(), "Accept-Encoding": "identity"}
    session = get_session()
    got = 0
    with open(part, "r+b" if offset else "wb") as out:
        out.truncate(offset)
        out.seek(offset)
        while offset < size:
            end = min(offset + chunk, size) - 1
            data = call(
                f"{what} (bytes {offset}-{end})",
                lambda offset=offset, end=end: _range(session, url, headers, offset, end),
            )
            out.write(data)
            offset += len(data)
            got += len(data)
            progress.advance(len(data), rel)
            faults.reached("fetch-download", len(data))
        out.flush()
        os.fsync(out.fileno())
    return got


def _range(session, url: str, headers: dict, start: int, end: int) -> bytes:
    """GET bytes start..end of `url` (following the Hub's redirects to its file storage); an
    error answer is raised as huggingface_hub raises it, so `classify`'s rules apply."""
    from huggingface_hub.utils import hf_raise_for_status

    # huggingface_hub 1.x+ hands out an httpx client, 0.x (the < 1.0 that LAVIS's
    # transformers==4.33.2 pins) a requests.Session: they spell "follow redirects" differently
    follow = (
        "allow_redirects" if type(session).__module__.startswith("requests") else "follow_redirects"
    )
    resp = session.get(url, headers={**headers, "Range": f"bytes={start}-{end}"}, **{follow: True})
    hf_raise_for_status(resp)
    content = resp.content
    if resp.status_code == 200:  # the whole file: a server that ignores Range
        content = content[start : end + 1]
    elif resp.status_code == 206:
        first = resp.headers.get("content-range", "").removeprefix("bytes ").split("-")[0]
        if first != str(start):
            raise ConnectionError(
                f"asked for bytes {start}-, got {resp.headers.get('content-range')}"
            )
    if not content:
        raise ConnectionError(f"empty answer for bytes {start}-{end}")
    return content[: end - start + 1]


def whoami(what: str) -> str:
    """Who the Hub says the token belongs to, in words ("NAME (token from ...)"): a cheap check
    of the credentials before anything heavy. No token, or one the Hub rejects (401), is an
    InputError in one line naming where the token was looked for; the token is never shown."""
    _client, user = api_and_user(what)
    name = user.get("name", "?") if isinstance(user, dict) else "?"
    return f"{name} (token from {token_source()})"
