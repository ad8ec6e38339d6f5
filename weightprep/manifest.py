"""Manifests: what a folder should contain, file by file and (optionally) tensor by tensor.

Three formats are read, detected by content: our YAML (`version: 1`, typed, unknown keys
refused), `SHA256SUMS` as `sha256sum` writes it, and `checklist.chk` as `md5sum` writes it
(Meta's download). Paths inside any of them are untrusted and checked before use.

Example YAML:

    version: 1
    name: llama-7b
    description: Meta's original LLaMA-7B download, as laid out on disk.
    source: [https://github.com/ggerganov/llama.cpp/blob/2580d75/SHA256SUMS]
    files:
      7B/params.json: {size: 101, sha256: 7e89e2...}
    tensors:
      model.norm.weight: {dtype: float16, shape: [4096], sha256: ...}
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from weightprep.errors import InputError

MAX_MANIFEST_BYTES = 64 * 2**20
HEX = {"sha256": 64, "md5": 32}
SUM_LINE = re.compile(r"^(?P<hash>[0-9a-fA-F]+) (?P<mode>[ *])(?P<path>.+)$")


class ManifestError(InputError):
    """A manifest is unreadable, malformed, or names a path outside the folder it describes."""


@dataclass(frozen=True)
class FileEntry:
    size: int | None = None
    sha256: str | None = None
    md5: str | None = None


@dataclass(frozen=True)
class TensorEntry:
    dtype: str
    shape: tuple[int, ...]
    sha256: str


@dataclass(frozen=True)
class Manifest:
    name: str
    files: dict[str, FileEntry]
    description: str = ""
    source: tuple[str, ...] = ()
    tensors: dict[str, TensorEntry] = field(default_factory=dict)
    format: str = "yaml"  # yaml | sha256sum | md5sum: where it was read from


def _show(value: object, limit: int = 100) -> str:
    """`repr(value)` for a message, cut short: values come from untrusted files."""
    if isinstance(value, (list, dict, set, tuple)):
        return f"a {type(value).__name__}"  # no repr: it may be huge or deeply shared
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_relpath(path: str, where: str) -> str:
    """Refuse absolute paths, `..`, empty parts and control characters; return a POSIX path."""
    if not path or "\x00" in path or any(ord(c) < 32 for c in path) or "\\" in path:
        raise ManifestError(f"{where}: path {_show(path)} is not a plain relative path")
    p = PurePosixPath(path)
    if p.is_absolute() or re.match(r"^[A-Za-z]:", path):
        raise ManifestError(f"{where}: absolute path {_show(path)} refused")
    parts = [x for x in path.split("/")]
    if any(x in ("", "..") for x in parts if x != ".") or ".." in p.parts:
        raise ManifestError(
            f"{where}: path {_show(path)} leaves the folder or is malformed; refused"
        )
    return str(p)


def _hexdigest(value: object, algo: str, where: str) -> str:
    if not isinstance(value, str) or not re.fullmatch(rf"[0-9a-fA-F]{{{HEX[algo]}}}", value):
        raise ManifestError(f"{where}: {algo} must be {HEX[algo]} hex digits, got {_show(value)}")
    return value.lower()


def _exact_keys(obj: object, required: set[str], optional: set[str], where: str) -> dict:
    if not isinstance(obj, dict):
        raise ManifestError(f"{where}: expected a mapping, got {type(obj).__name__}")
    keys = set(obj)
    if not all(isinstance(k, str) for k in keys):
        raise ManifestError(f"{where}: keys must be strings")
    missing, unknown = required - keys, keys - required - optional
    if missing:
        raise ManifestError(f"{where}: missing key(s) {', '.join(sorted(missing))}")
    if unknown:
        raise ManifestError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    return obj


def safe_load_no_aliases(text: str):
    """`yaml.safe_load`, refusing anchors/aliases (`&a`, `*a`): a manifest never needs them, and
    a few lines of nested aliases ("billion laughs") expand to gigabytes when anything walks or
    prints the result. Raises `yaml.YAMLError`."""
    import yaml

    class NoAliases(yaml.SafeLoader):
        def compose_node(self, parent, index):  # type: ignore[no-untyped-def]
            if self.check_event(yaml.AliasEvent):
                raise yaml.composer.ComposerError(
                    None, None, "aliases (*name) are not allowed", self.peek_event().start_mark
                )
            return super().compose_node(parent, index)

    return yaml.load(text, Loader=NoAliases)  # noqa: S506 (a SafeLoader)


def parse_yaml(text: str, where: str) -> Manifest:
    import yaml

    try:
        doc = safe_load_no_aliases(text)
    except RecursionError:
        raise ManifestError(f"{where}: not valid YAML (nested too deeply)") from None
    except yaml.YAMLError as exc:
        raise ManifestError(f"{where}: not valid YAML ({str(exc).splitlines()[0]})") from exc
    doc = _exact_keys(
        doc, {"version", "name", "files"}, {"description", "source", "tensors"}, where
    )
    if doc["version"] != 1:
        raise ManifestError(f"{where}: version {_show(doc['version'])} unsupported (this reads 1)")
    if not isinstance(doc["name"], str) or not doc["name"]:
        raise ManifestError(f"{where}: name must be a non-empty string")
    desc = doc.get("description", "")
    if not isinstance(desc, str):
        raise ManifestError(f"{where}: description must be a string")
    source = doc.get("source", [])
    if isinstance(source, str):
        source = [source]
    if not isinstance(source, list) or not all(isinstance(s, str) for s in source):
        raise ManifestError(f"{where}: source must be a URL or a list of URLs")
    files_raw = doc["files"] or {}
    if not isinstance(files_raw, dict):
        raise ManifestError(f"{where}: files must map a relative path to its size and hash")
    files: dict[str, FileEntry] = {}
    for path, entry in files_raw.items():
        w = f"{where}: files[{_show(path)}]"
        rel = check_relpath(path if isinstance(path, str) else "", w)
        e = _exact_keys(entry, set(), {"size", "sha256", "md5"}, w)
        size = e.get("size")
        if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
            raise ManifestError(f"{w}: size must be a non-negative integer")
        sha = _hexdigest(e["sha256"], "sha256", w) if "sha256" in e else None
        md5 = _hexdigest(e["md5"], "md5", w) if "md5" in e else None
        if sha is None and md5 is None:
            raise ManifestError(f"{w}: needs sha256 (or md5 where only md5 is published)")
        files[rel] = FileEntry(size=size, sha256=sha, md5=md5)
    tensors: dict[str, TensorEntry] = {}
    tensors_raw = doc.get("tensors") or {}
    if not isinstance(tensors_raw, dict):
        raise ManifestError(f"{where}: tensors must map a tensor name to dtype, shape, sha256")
    for name, entry in tensors_raw.items():
        w = f"{where}: tensors[{_show(name)}]"
        e = _exact_keys(entry, {"dtype", "shape", "sha256"}, set(), w)
        shape = e["shape"]
        if not isinstance(shape, list) or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
        ):
            raise ManifestError(f"{w}: shape must be a list of non-negative integers")
        if not isinstance(e["dtype"], str):
            raise ManifestError(f"{w}: dtype must be a string")
        tensors[str(name)] = TensorEntry(
            e["dtype"], tuple(shape), _hexdigest(e["sha256"], "sha256", w)
        )
    return Manifest(doc["name"], files, desc, tuple(source), tensors, "yaml")


def parse_sums(text: str, where: str, name: str = "") -> Manifest:
    """Lines as `sha256sum`/`md5sum` write them: `<hex>  <path>` (text) or `<hex> *<path>` (binary)."""
    files: dict[str, FileEntry] = {}
    algo = None
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        if line.startswith("\\"):
            raise ManifestError(f"{where}:{n}: escaped file names are not supported")
        m = SUM_LINE.match(line)
        if not m:
            raise ManifestError(f"{where}:{n}: not a `<hash>  <path>` line")
        h = m.group("hash")
        this = {64: "sha256", 32: "md5"}.get(len(h))
        if this is None or (algo and this != algo):
            raise ManifestError(f"{where}:{n}: hash of unexpected length {len(h)}")
        algo = this
        rel = check_relpath(m.group("path"), f"{where}:{n}")
        if rel in files:
            raise ManifestError(f"{where}:{n}: {_show(rel)} listed twice")
        files[rel] = FileEntry(**{algo: h.lower()})
    if not files:
        raise ManifestError(f"{where}: no checksum lines")
    return Manifest(name or where, files, format="sha256sum" if algo == "sha256" else "md5sum")


def read_manifest(path: Path) -> Manifest:
    """Read a manifest of any supported format, detected by content."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ManifestError(f"{path}: cannot read manifest ({exc.strerror})") from exc
    if size > MAX_MANIFEST_BYTES:
        raise ManifestError(f"{path}: {size} bytes is too large for a manifest")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ManifestError(f"{path}: not UTF-8 text") from exc
    first = next((ln for ln in text.splitlines() if ln.strip() and not ln.startswith("#")), "")
    if SUM_LINE.match(first) and re.match(r"^[0-9a-fA-F]{32,64} ", first):
        return parse_sums(text, str(path), path.stem)
    return parse_yaml(text, str(path))


def dump_yaml(m: Manifest) -> str:
    import yaml

    doc: dict = {"version": 1, "name": m.name}
    if m.description:
        doc["description"] = m.description
    if m.source:
        doc["source"] = list(m.source)
    doc["files"] = {
        p: {
            k: v
            for k, v in (("size", e.size), ("sha256", e.sha256), ("md5", e.md5))
            if v is not None
        }
        for p, e in sorted(m.files.items())
    }
    if m.tensors:
        doc["tensors"] = {
            n: {"dtype": t.dtype, "shape": list(t.shape), "sha256": t.sha256}
            for n, t in sorted(m.tensors.items())
        }
    return yaml.safe_dump(
        doc, sort_keys=False, allow_unicode=True, default_flow_style=None, width=200
    )


def dump_sums(m: Manifest, algo: str = "sha256") -> str:
    lines = []
    for p, e in sorted(m.files.items()):
        h = getattr(e, algo)
        if h is None:
            raise ManifestError(f"{p}: no {algo} to write")
        lines.append(f"{h}  {p}\n")
    return "".join(lines)


def shipped() -> dict[str, Manifest]:
    """The manifests that ship with weightprep, by name."""
    from importlib.resources import files

    out = {}
    for entry in sorted(files("weightprep.manifests").iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".yaml"):
            m = parse_yaml(entry.read_text(encoding="utf-8"), f"manifests/{entry.name}")
            out[m.name] = m
    return out


def resolve_manifest(arg: str) -> tuple[Manifest, Path | None]:
    """A manifest file path, or the name of a shipped manifest -> (manifest, its path if a file)."""
    p = Path(arg).expanduser()
    if p.is_file():
        return read_manifest(p), p
    known = shipped()
    if arg in known:
        return known[arg], None
    raise ManifestError(
        f"{arg}: no such file, and not a shipped manifest (known: {', '.join(known) or 'none'})"
    )
