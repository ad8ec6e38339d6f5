"""`weightprep verify hf://… | gdrive://…`: check a published copy against a manifest from the
remote's own listing, without downloading the weights.

The Hub lists an LFS file's sha256; a small (non-LFS) file has only a git blob id there, so it is
downloaded (it is small) and hashed. Drive lists `sha256Checksum` and `md5Checksum` for every
file it holds. The listing and the comparison are `weightprep.remote`'s.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from weightprep.checksum import Result, VerifyReport
from weightprep.manifest import FileEntry, Manifest
from weightprep.remote.listing import Listed, mismatch
from weightprep.remote.location import Location, parse_location

SKIP_DOWNLOAD_ABOVE = 50 * 2**20


def _expected(e: FileEntry) -> Listed:
    return Listed(e.size, e.sha256 or None, e.md5 or None)


def _results(manifest: Manifest, remote: dict[str, Listed]) -> dict[str, Result]:
    """Manifest entries against a remote listing; remote files it does not list are EXTRA."""
    out: dict[str, Result] = {}
    for rel, e in manifest.files.items():
        r = remote.get(rel)
        why = mismatch(_expected(e), r)
        if why == "missing":
            out[rel] = Result(rel, "MISSING")
        else:
            out[rel] = Result(rel, "OK" if why is None else "MISMATCH", why or "")
    for rel in remote:
        out.setdefault(rel, Result(rel, "EXTRA"))
    return out


def _hub_listing(dest: Location, manifest: Manifest, revision: str | None) -> dict[str, Listed]:
    """The Hub's listing, with the digests of small files it gives no sha256 for filled in
    from the files themselves (kilobytes)."""
    from huggingface_hub import hf_hub_download

    from weightprep.remote import hub

    client = hub.api(str(dest))
    remote = hub.call(f"{dest}: list files", lambda: hub.listing(client, dest.target, revision))
    for rel, r in list(remote.items()):
        e = manifest.files.get(rel)
        if e is None or r.sha256 is not None or r.size is None or r.size > SKIP_DOWNLOAD_ABOVE:
            continue
        if e.size is not None and e.size != r.size:
            continue
        path = hub.call(
            f"{dest}: download {rel}",
            lambda rel=rel: hf_hub_download(dest.target, rel, revision=revision),
        )
        data = Path(path).read_bytes()
        remote[rel] = Listed(
            r.size, hashlib.sha256(data).hexdigest(), hashlib.md5(data).hexdigest(), r.blob_id
        )
    return remote


def verify_remote(
    dest_text: str,
    manifest: Manifest,
    *,
    strict: bool = False,
    ignore: frozenset[str] = frozenset(),
    revision: str | None = None,
    credentials: Path | None = None,
) -> VerifyReport:
    """`manifest` against what `dest_text` (hf:// or gdrive://) lists; a remote that cannot be
    reached within the retry budget is a NetworkError (exit 3)."""
    dest = parse_location(dest_text)
    if dest.kind == "hf":
        remote = _hub_listing(dest, manifest, revision)
    else:
        from weightprep.remote import drive

        remote = drive.listing(dest, credentials)
    results = _results(manifest, remote)
    for rel in ignore:
        if rel in results and results[rel].status == "EXTRA":
            del results[rel]
    return VerifyReport(
        Path(str(dest)), manifest.name, tuple(results[r] for r in sorted(results)), strict
    )
