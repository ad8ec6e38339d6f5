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


def _hub_results(dest: Dest, manifest: Manifest, revision: str | None) -> dict[str, Result]:
    from huggingface_hub import HfApi, hf_hub_download

    from weightprep.publish.hub import _retrying, listing

    api = HfApi()
    remote = _retrying(f"{dest}: list files", lambda: listing(api, dest.target, revision))
    out: dict[str, Result] = {}
    for rel, e in manifest.files.items():
        r = remote.get(rel)
        if r is None:
            out[rel] = Result(rel, "MISSING")
        elif e.size is not None and r.size != e.size:
            out[rel] = Result(rel, "MISMATCH", f"size {r.size}, expected {e.size}")
        elif r.sha256 is not None and e.sha256:
            ok = r.sha256 == e.sha256
            out[rel] = Result(
                rel,
                "OK" if ok else "MISMATCH",
                "" if ok else f"sha256 {r.sha256}, expected {e.sha256}",
            )
        elif r.size <= SKIP_DOWNLOAD_ABOVE:
            algo = "sha256" if e.sha256 else "md5"
            path = hf_hub_download(dest.target, rel, revision=revision)
            got = hashlib.new(algo, Path(path).read_bytes()).hexdigest()
            want = e.sha256 or e.md5
            out[rel] = Result(
                rel,
                "OK" if got == want else "MISMATCH",
                "" if got == want else f"{algo} {got}, expected {want}",
            )
        else:
            out[rel] = Result(rel, "MISMATCH", "not an LFS file: no sha256 in the listing")
    for rel in remote:
        if rel not in out:
            out[rel] = Result(rel, "EXTRA")
    return out


def _drive_results(dest: Dest, manifest: Manifest, credentials: Path | None) -> dict[str, Result]:
    from weightprep.publish.drive import remote_listing

    remote = remote_listing(dest, credentials)
    out: dict[str, Result] = {}
    for rel, e in manifest.files.items():
        r = remote.get(rel)
        if r is None:
            out[rel] = Result(rel, "MISSING")
        elif e.size is not None and r.size != e.size:
            out[rel] = Result(rel, "MISMATCH", f"size {r.size}, expected {e.size}")
        else:
            algo = "sha256" if e.sha256 and r.sha256 else "md5"
            got, want = (r.sha256, e.sha256) if algo == "sha256" else (r.md5, e.md5)
            if not got or not want:
                out[rel] = Result(rel, "MISMATCH", "no common checksum between manifest and Drive")
            else:
                out[rel] = Result(
                    rel,
                    "OK" if got == want else "MISMATCH",
                    "" if got == want else f"{algo} {got}, expected {want}",
                )
    for rel in remote:
        if rel not in out:
            out[rel] = Result(rel, "EXTRA")
    return out


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
