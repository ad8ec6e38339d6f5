"""Point LAVIS's InstructBLIP config at a prepared Vicuna folder, changing one line only.

LAVIS reads `model.llm_model` from `lavis/configs/models/blip2/blip2_instruct_vicuna7b.yaml`
(13b likewise) and loads it with `LlamaTokenizer.from_pretrained(llm_model, use_fast=False)` and
its own `LlamaForCausalLM`. A YAML round trip would rewrite the file (its header comments start
with a space; quoting and blank lines would change), so the value is replaced on its own line
and the result is parsed back to prove that only `llm_model` changed.
"""

from __future__ import annotations

import difflib
import importlib.util
import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from weightprep.errors import InputError, VerificationError
from weightprep.io import faults
from weightprep.io.atomic import write_atomic
from weightprep.io.jsonfile import read_object

MODEL_TYPES = ("vicuna7b", "vicuna13b")
CONFIG_REL = Path("configs/models/blip2")
BACKUP_SUFFIX = ".weightprep-backup"
_TOP_KEY = re.compile(r"^([A-Za-z_][\w-]*)\s*:")
_LLM_LINE = re.compile(
    r"^(?P<indent>[ \t]+)llm_model(?P<sep>\s*:\s*)(?P<value>.*?)(?P<comment>\s+#.*)?(?P<eol>\r?\n?)$"
)


class LavisConfigError(InputError):
    """The LAVIS config cannot be found, parsed, or has no `model.llm_model`."""


def config_name(model_type: str) -> str:
    if model_type not in MODEL_TYPES:
        raise LavisConfigError(f"--model-type {model_type}: choose {' or '.join(MODEL_TYPES)}")
    return f"blip2_instruct_{model_type}.yaml"


def installed_lavis() -> Path | None:
    """The installed `lavis` package folder, found without importing LAVIS."""
    spec = importlib.util.find_spec("lavis")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def locate_config(lavis: Path | None, model_type: str) -> Path:
    """`--lavis` as a source checkout, the `lavis` package folder or the yaml; else the installed one."""
    name = config_name(model_type)
    looked: list[str] = []
    if lavis is not None:
        if lavis.is_file():
            return lavis
        candidates = [lavis / "lavis" / CONFIG_REL / name, lavis / CONFIG_REL / name]
    else:
        pkg = installed_lavis()
        candidates = [pkg / CONFIG_REL / name] if pkg else []
        if pkg is None:
            looked.append("no importable `lavis` package on this Python's path")
    for c in candidates:
        if c.is_file():
            return c
        looked.append(str(c))
    raise LavisConfigError(
        f"{name} not found (looked in: {'; '.join(looked)}); pass --lavis with your LAVIS checkout, "
        "its lavis/ package folder, or the yaml file itself"
    )


def yaml_quote(value: str) -> str:
    """A double-quoted YAML scalar that reads back as exactly `value` (JSON strings are valid YAML)."""
    return json.dumps(value, ensure_ascii=False)


def _load(text: str, where: Path) -> dict:
    import yaml

    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise LavisConfigError(f"{where}: not valid YAML ({str(exc).splitlines()[0]})") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("model"), dict):
        raise LavisConfigError(f"{where}: no `model:` section; is this a LAVIS model config?")
    return doc


def patch_text(text: str, value: str, where: Path) -> tuple[str, object]:
    """Return (new text, old value) with only `model.llm_model`'s line changed."""
    before = _load(text, where)
    if "llm_model" not in before["model"]:
        raise LavisConfigError(
            f"{where}: has no model.llm_model (the Flan-T5 configs load their LLM by name); "
            f"weightprep patches the {' / '.join(MODEL_TYPES)} instruct configs"
        )
    lines = text.splitlines(keepends=True)
    top, hits = None, []
    for i, line in enumerate(lines):
        m = _TOP_KEY.match(line)
        if m:
            top = m.group(1)
        elif top == "model" and _LLM_LINE.match(line):
            hits.append(i)
    if len(hits) != 1:
        raise LavisConfigError(
            f"{where}: expected one `llm_model:` line under `model:`, found {len(hits)}"
        )
    m = _LLM_LINE.match(lines[hits[0]])
    assert m is not None
    lines[hits[0]] = (
        f"{m.group('indent')}llm_model{m.group('sep')}{yaml_quote(value)}{m.group('comment') or ''}{m.group('eol')}"
    )
    new = "".join(lines)
    after = _load(new, where)
    expected = {**before, "model": {**before["model"], "llm_model": value}}
    if after != expected:
        raise LavisConfigError(
            f"{where}: could not change llm_model alone (unusual layout); edit it by hand"
        )
    return new, before["model"]["llm_model"]


def check_model_dir(model_dir: Path, verify: bool, model_type: str | None = None) -> list[str]:
    """What LAVIS needs from `llm_model`; raise VerificationError naming the first problem.

    Refused, as `weightprep inspect` tells them: a vision-language bundle, a model other than
    LLaMA, a size other than `model_type`'s (13B for vicuna7b and the reverse; a size that
    cannot be told, such as a tiny test model's, passes with a note), and delta weights.
    """
    from weightprep.inspect import config_size, delta_evidence, is_llama, vlm_type

    if not model_dir.is_dir():
        raise VerificationError(f"{model_dir}: not a folder")
    cfg = model_dir / "config.json"
    if not cfg.is_file():
        raise VerificationError(f"{cfg}: missing (not a Hugging Face model folder)")
    try:
        c = read_object(cfg)  # not JSON, not an object, too large: named in its message
    except InputError as exc:
        raise VerificationError(str(exc)) from None
    vlm = vlm_type(c)
    if vlm is not None:
        raise VerificationError(
            f"{cfg}: a vision-language bundle (model_type {vlm}), not a language model; "
            "llm_model must be the Vicuna folder itself"
        )
    if not is_llama(c):
        raise VerificationError(
            f"{cfg}: not a LLaMA model (LAVIS loads llm_model with LlamaForCausalLM)"
        )
    notes = [f"config.json: {', '.join(c.get('architectures') or [c.get('model_type')])}"]
    size, why = config_size(c)
    if model_type is not None:
        want = model_type.removeprefix("vicuna").upper()
        if size is None:
            notes.append(f"size: not told ({why}); not checked against {model_type}")
        elif size != want:
            other = {"7B": " (pass --model-type vicuna7b)", "13B": " (pass --model-type vicuna13b)"}
            raise VerificationError(
                f"{cfg}: a {size} model ({why}) but {config_name(model_type)} is for "
                f"{want}{other.get(size, '')}"
            )
        else:
            notes.append(f"size: {size}, as {model_type} wants")
    notes.append(_check_weights(model_dir))
    evidence = delta_evidence(model_dir)
    if evidence is not None and evidence[0]:
        raise VerificationError(
            f"{model_dir}: delta weights, not a model ({evidence[1]}); apply the delta to its "
            "LLaMA base first (weightprep apply-delta) and patch in the result"
        )
    if evidence is not None:
        notes.append(f"weights: a model, not a delta ({evidence[1]})")
    if not (model_dir / "tokenizer.model").is_file():
        raise VerificationError(
            f"{model_dir / 'tokenizer.model'}: missing; LAVIS calls LlamaTokenizer.from_pretrained(llm_model, use_fast=False)"
        )
    notes.append("tokenizer.model: present")
    notes.append(_check_sums(model_dir, verify))
    return notes


def _check_weights(model_dir: Path) -> str:
    for index_name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        idx = model_dir / index_name
        if not idx.is_file():
            continue
        try:
            doc = json.loads(idx.read_text(encoding="utf-8"))
            shards = sorted(set(doc["weight_map"].values()))
            total = int(doc.get("metadata", {}).get("total_size", 0))
        except (
            UnicodeDecodeError,
            json.JSONDecodeError,
            KeyError,
            AttributeError,
            TypeError,
            ValueError,
        ) as exc:
            raise VerificationError(f"{idx}: unreadable index ({exc})") from exc
        if not shards:
            raise VerificationError(f"{idx}: names no weight files (an empty weight_map)")
        missing = [s for s in shards if not (model_dir / s).is_file()]
        if missing:
            raise VerificationError(f"{model_dir}: shard(s) missing: {', '.join(missing)}")
        size = sum((model_dir / s).stat().st_size for s in shards)
        if size < total:
            raise VerificationError(
                f"{model_dir}: shards hold {size} bytes but the index says the tensors take {total} (truncated?)"
            )
        return f"weights: {len(shards)} shard(s), {size / 1e9:.2f} GB, as {index_name} lists"
    for single in ("model.safetensors", "pytorch_model.bin"):
        if (model_dir / single).is_file() and (model_dir / single).stat().st_size > 8:
            return f"weights: {single}"
    raise VerificationError(
        f"{model_dir}: no weights (no index, model.safetensors or pytorch_model.bin)"
    )


def _check_sums(model_dir: Path, verify: bool) -> str:
    from weightprep.checksum import verify_files
    from weightprep.manifest import read_manifest

    for name in ("manifest.yaml", "SHA256SUMS"):
        p = model_dir / name
        if not p.is_file():
            continue
        if not verify:
            return f"{name}: present, not checked (pass --verify to hash the folder)"
        report = verify_files(
            model_dir, read_manifest(p), ignore=frozenset({name, "SHA256SUMS", "manifest.yaml"})
        )
        if not report.ok:
            bad = [
                f"{r.path} {r.status}"
                for r in report.results
                if r.status in ("MISMATCH", "MISSING")
            ]
            raise VerificationError(f"{model_dir}: does not match its {name}: {', '.join(bad[:5])}")
        return f"{name}: verified ({report.count('OK')} files)"
    return "no manifest or SHA256SUMS beside the model: not checked"


@dataclass(frozen=True)
class PatchResult:
    config: Path
    old: object
    new: str
    status: str  # patched | already set | dry run | restored
    diff: str
    checks: tuple[str, ...]
    backup: Path | None
    note: str | None = None  # where the backup sits, when that shows in `git status`


def git_note(backup: Path) -> str | None:
    """How to keep `git status` of the LAVIS checkout clean, when the backup is inside one.

    The backup stays beside the config (so `--restore` finds it, wherever LAVIS is moved);
    git's own per-checkout ignore list, `.git/info/exclude`, hides it without a tracked change.
    """
    for folder in backup.absolute().parents:
        git = folder / ".git"
        if git.exists():
            exclude = (git / "info" / "exclude") if git.is_dir() else None
            where = exclude or f"{folder}/.git's info/exclude"
            return (
                f"the backup {backup.name} is inside the git checkout {folder}, so `git status` "
                f"lists it; to hide it: echo '*{BACKUP_SUFFIX}' >> {where}"
            )
    return None


def _write_atomic_keep_mode(path: Path, data: bytes) -> None:
    # tests: killed with the new text written, not yet in place
    write_atomic(path, data, mode=path.stat().st_mode & 0o7777, fault="lavis")


def backup_path(config: Path) -> Path:
    return config.with_name(config.name + BACKUP_SUFFIX)


def patch_lavis_config(
    model_dir: Path,
    *,
    lavis: Path | None = None,
    model_type: str = "vicuna7b",
    dry_run: bool = False,
    check: bool = True,
    verify: bool = False,
) -> PatchResult:
    """Set `model.llm_model` in LAVIS's instruct config to `model_dir`'s absolute path.

    Example: `patch_lavis_config(Path("vicuna-7b"), lavis=Path("~/LAVIS").expanduser())`.
    """
    config = locate_config(lavis, model_type)
    value = str(model_dir.expanduser().absolute())
    if not value.isprintable():
        raise LavisConfigError(
            f"{value!r}: the path has unprintable characters; YAML cannot hold it"
        )
    raw = config.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise LavisConfigError(f"{config}: not UTF-8 text") from exc
    new, old = patch_text(text, value, config)
    checks = (
        tuple(check_model_dir(Path(value), verify, model_type))
        if check
        else ("not checked (--no-check)",)
    )
    diff = "".join(
        difflib.unified_diff(
            text.splitlines(keepends=True), new.splitlines(keepends=True), str(config), str(config)
        )
    )
    if old == value:
        return PatchResult(config, old, value, "already set", "", checks, None)
    if dry_run:
        return PatchResult(config, old, value, "dry run", diff, checks, None)
    backup = backup_path(config)
    if not backup.exists():
        faults.reached("lavis", 1)
        shutil.copy2(config, backup)
    faults.reached("lavis", 1)
    _write_atomic_keep_mode(config, new.encode("utf-8"))
    faults.reached("lavis", 1)
    return PatchResult(config, old, value, "patched", diff, checks, backup, git_note(backup))


def restore_lavis_config(*, lavis: Path | None = None, model_type: str = "vicuna7b") -> PatchResult:
    """Put back the original config saved by the first patch, byte for byte."""
    config = locate_config(lavis, model_type)
    backup = backup_path(config)
    if not backup.is_file():
        raise LavisConfigError(f"{backup}: no backup to restore (was {config.name} ever patched?)")
    _write_atomic_keep_mode(config, backup.read_bytes())
    backup.unlink()
    return PatchResult(config, None, "", "restored", "", (), backup)
