"""The work dir's state: `WORKDIR/state.json`, and the digest cache in it.

state.json (rewritten atomically after every stage) keeps, per stage, its key (sha256 of its
kind, its resolved options and the digests of everything it reads) and the sha256 of every file
of its output. File digests are cached by (size, mtime, inode), so an unchanged file is only
`stat`ed. A `Workdir` opened with `hashing=False` (the plan) never reads a file: where the cache
has no digest it answers None, and the plan says the file will be hashed by the run.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from weightprep.checksum import hash_files, list_files
from weightprep.errors import InputError
from weightprep.io.atomic import write_atomic
from weightprep.manifest import parse_sums

STATE = "state.json"


class Workdir:
    def __init__(self, path: Path, hashing: bool = True) -> None:
        self.path = path
        self.hashing = hashing
        self.bytes_hashed = 0  # bytes read to digest files (0 for a plan, always)
        self.files_hashed = 0
        self.state_file = path / STATE
        try:
            self.state = json.loads(self.state_file.read_text()) if self.state_file.exists() else {}
        except (OSError, ValueError) as exc:
            raise InputError(
                f"{self.state_file}: unreadable ({exc}); remove it to start over"
            ) from None
        self.state.setdefault("version", 1)
        self.state.setdefault("stages", {})
        self.state.setdefault("file_cache", {})

    def save(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        write_atomic(self.state_file, json.dumps(self.state, indent=1, sort_keys=True).encode())

    # --- digests -----------------------------------------------------------------------------
    @staticmethod
    def _stamp(p: Path) -> list[int]:
        st = p.stat()
        return [st.st_size, st.st_mtime_ns, st.st_ino]

    def cached(self, p: Path) -> str | None:
        """The recorded sha256 of `p` if it has not changed size, mtime or inode since."""
        hit = self.state["file_cache"].get(str(p.resolve()))
        return hit[3] if hit and hit[:3] == self._stamp(p) else None

    def remember(self, p: Path, digest: str) -> None:
        self.state["file_cache"][str(p.resolve())] = [*self._stamp(p), digest]

    def sha256s(self, folder: Path, rels: list[str]) -> dict[str, str | None]:
        """sha256 of each `folder/rel`, from the cache where the file did not change, hashing
        the rest in parallel (None for them when not hashing)."""
        out = {r: self.cached(folder / r) for r in rels}
        misses = [r for r, d in out.items() if d is None]
        if not self.hashing:
            return out
        for r, e in hash_files(folder, misses).items():
            out[r] = e.sha256
            self.remember(folder / r, e.sha256)
            self.bytes_hashed += (folder / r).stat().st_size
            self.files_hashed += 1
        return out

    def files_digest(self, folder: Path, rels: list[str]) -> str | None:
        """Content digest of some files of a folder (relative names and sha256s); None when a
        file's digest is not known without reading it (a plan)."""
        present = [r for r in rels if (folder / r).is_file()]
        got = self.sha256s(folder, present)
        if any(got[r] is None for r in present):
            return None
        h = hashlib.sha256()
        for rel in sorted(rels):
            h.update(f"{rel}\0{got.get(rel) or 'missing'}\n".encode())
        return h.hexdigest()

    def unknown(self, folder: Path, rels: list[str] | None) -> list[str]:
        """The files of `folder` (or those `rels`) whose digest the cache does not hold."""
        if folder.is_file():
            return [] if self.cached(folder) else [folder.name]
        if not folder.is_dir():
            return []
        rels = list_files(folder) if rels is None else rels
        return [r for r in rels if (folder / r).is_file() and self.cached(folder / r) is None]

    def path_digest(self, p: Path) -> str | None:
        """Content digest of a file or a whole folder (None: not known without reading)."""
        if p.is_file():
            return self.sha256s(p.parent, [p.name])[p.name]
        if not p.is_dir():
            return "missing"
        return self.files_digest(p, list_files(p))

    def output_manifest(self, out: Path) -> dict[str, str]:
        """{file: sha256} of a stage output just finished: from the SHA256SUMS our commands
        write while writing (remembered, so a re-run only stats them), plus anything else."""
        listed: dict[str, str] = {}
        sums = out / "SHA256SUMS"
        if sums.is_file():
            m = parse_sums(sums.read_text(), str(sums), out.name)
            listed = {r: e.sha256 for r, e in m.files.items() if (out / r).is_file()}
            for r, d in listed.items():
                self.remember(out / r, d)
        rest = [r for r in list_files(out) if r not in listed]
        return {**listed, **self.sha256s(out, rest)}  # type: ignore[dict-item]

    def still_valid(self, out: Path, files: dict[str, str]) -> bool:
        return self.damage(out, files) is None

    def damage(self, out: Path, files: dict[str, str]) -> str | None:
        """What differs from the recorded output, in words naming the files; None: nothing.
        Not hashing, a file changed since it was recorded counts as changed (the run rehashes)."""
        if not out.is_dir():
            return f"its output {out} is missing"
        present = set(list_files(out))

        def names(xs: set[str]) -> str:
            xs_sorted = sorted(xs)
            return ", ".join(xs_sorted[:3]) + (f" and {len(xs) - 3} more" if len(xs) > 3 else "")

        if set(files) - present:
            return f"{out}: missing {names(set(files) - present)}"
        if present - set(files):
            return f"{out}: not in its record: {names(present - set(files))}"
        got = self.sha256s(out, list(files))
        changed = {f for f in files if got.get(f) is not None and got[f] != files[f]}
        if changed:
            return f"{out}: changed since it was made: {names(changed)}"
        touched = {f for f in files if got.get(f) is None}
        if touched:  # a plan: the run hashes them again before deciding
            return f"{out}: changed since it was made (size or mtime): {names(touched)}"
        return None


def manifest_digest(files: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()
