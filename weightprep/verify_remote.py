"""`weightprep verify hf://… | gdrive://…`: check a published copy against a manifest from the
remote's own listing, without downloading the weights.

The Hub lists an LFS file's sha256; a small (non-LFS) file has only a git blob id there, so it is
downloaded (it is small) and hashed. Drive lists `sha256Checksum` and `md5Checksum` for every
file it holds.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from weightprep.checksum import Result, VerifyReport
from weightprep.manifest import Manifest
from weightprep.publish.dest import Dest, parse_dest

SKIP_DOWNLOAD_ABOVE = 50 * 2**20


def _compare(manifest: Manifest, remote: dict, digest) -> dict[str, Result]:
    """Manifest entries against a remote listing: missing, size, then `digest(rel, entry, item)`
    -> (algo, got, want) or a Result; remote files the manifest does not list are EXTRA."""
    out: dict[str, Result] = {}
    for rel, e in manifest.files.items():
        r = remote.get(rel)
        if r is None:
            out[rel] = Result(rel, "MISSING")
            continue
        if e.size is not None and r.size != e.size:
            out[rel] = Result(rel, "MISMATCH", f"size {r.size}, expected {e.size}")
            continue
        found = digest(rel, e, r)
        if isinstance(found, Result):
            out[rel] = found
            continue
        algo, got, want = found
        ok = got == want
        out[rel] = Result(
            rel, "OK" if ok else "MISMATCH", "" if ok else f"{algo} {got}, expected {want}"
        )
    for rel in remote:
        out.setdefault(rel, Result(rel, "EXTRA"))
    return out


def _hub_results(dest: Dest, manifest: Manifest, revision: str | None) -> dict[str, Result]:
    from huggingface_hub import HfApi, hf_hub_download

    from weightprep.publish.hub import _retrying, listing

    api = HfApi()
    remote = _retrying(f"{dest}: list files", lambda: listing(api, dest.target, revision))

    def digest(rel, e, r):
        if r.sha256 is not None and e.sha256:
            return "sha256", r.sha256, e.sha256
        if r.size > SKIP_DOWNLOAD_ABOVE:
            return Result(rel, "MISMATCH", "not an LFS file: no sha256 in the listing")
        algo = "sha256" if e.sha256 else "md5"  # small files: download (kilobytes) and hash
        path = hf_hub_download(dest.target, rel, revision=revision)
        return algo, hashlib.new(algo, Path(path).read_bytes()).hexdigest(), e.sha256 or e.md5

    return _compare(manifest, remote, digest)


def _drive_results(dest: Dest, manifest: Manifest, credentials: Path | None) -> dict[str, Result]:
    from weightprep.publish.drive import remote_listing

    def digest(rel, e, r):
        algo = "sha256" if e.sha256 and r.sha256 else "md5"
        got, want = (r.sha256, e.sha256) if algo == "sha256" else (r.md5, e.md5)
        if not got or not want:
            return Result(rel, "MISMATCH", "no common checksum between manifest and Drive")
        return algo, got, want

    return _compare(manifest, remote_listing(dest, credentials), digest)


def verify_remote(
    dest_text: str,
    manifest: Manifest,
    *,
    strict: bool = False,
    ignore: frozenset[str] = frozenset(),
    revision: str | None = None,
    credentials: Path | None = None,
) -> VerifyReport:
    dest = parse_dest(dest_text)
    if dest.kind == "hf":
        results = _hub_results(dest, manifest, revision)
    else:
        results = _drive_results(dest, manifest, credentials)
    for rel in ignore:
        if rel in results and results[rel].status == "EXTRA":
            del results[rel]
    return VerifyReport(
        Path(str(dest)), manifest.name, tuple(results[r] for r in sorted(results)), strict
    )
