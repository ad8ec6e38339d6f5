"""Recipes: small YAML files naming inputs, settings and stages. Typed, strict, version 1.

```yaml
version: 1
name: example
description: what it does
settings: {keep_intermediate: true, publish_to: ""}   # --set KEY=VALUE overrides
inputs:                                               # --set inputs.NAME=VALUE overrides
  llama: ~/LLaMA                 # a folder, or hf://NS/NAME[@REVISION] / gdrive://... (fetched)
stages:
  - id: convert
    run: convert-llama           # one of STAGE_KINDS
    with: {input: "${inputs.llama}", model_size: 7B}
    when: "${settings.publish_to}"   # optional: the stage runs only when this is non-empty
```
`${inputs.NAME}` is an input's folder, `${ID}` an earlier stage's output folder (`${ID}/x` a
path in it), `${settings.KEY}` a setting. Unknown keys, unknown stage kinds, references to
later or unknown stages and missing required options are refused with one line naming the place.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from weightprep.errors import InputError

VERSION = 1
REF = re.compile(r"\$\{([A-Za-z0-9_.-]+)\}")
ID = re.compile(r"^[a-z][a-z0-9-]{0,40}$")

# kind -> (required options, optional options)
STAGE_KINDS: dict[str, tuple[set[str], set[str]]] = {
    "make-example": (set(), {"seed"}),
    "convert-llama": ({"input"}, {"model_size", "llama_version", "dtype", "verify_input"}),
    "verify": ({"folder", "manifest"}, {"strict"}),
    "fetch": ({"source"}, {"revision", "manifest"}),
    "make-example-delta": ({"base"}, {"steps", "model_size"}),
    "apply-delta": (
        {"base", "delta"},
        {
            "verify",
            "manifest",
            "verify_base",
            "reference_text",
            "max_perplexity",
            "allow_base_mismatch",
            "model_size",
            "verify_input",
        },
    ),
    "patch-lavis-config": ({"llm"}, {"lavis", "model_type"}),
    "make-example-vlm": ({"model", "llm"}, set()),
    "publish": ({"model", "to"}, {"public", "revision", "message"}),
    "smoke-test": (
        {"model"},
        {
            "llm",
            "weights",
            "vision",
            "device",
            "dtype",
            "max_new_tokens",
            "expect",
            "example",
            "reference_text",
            "max_perplexity",
            "report",
        },
    ),
}
# kinds that write a folder of their own under the work dir
MAKES_OUTPUT = {
    "make-example",
    "convert-llama",
    "fetch",
    "make-example-delta",
    "apply-delta",
    "make-example-vlm",
}


class RecipeError(InputError):
    """A recipe that does not follow the schema."""


@dataclass(frozen=True)
class Stage:
    id: str
    run: str
    options: dict
    when: str | None = None


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    settings: dict
    inputs: dict[str, str]
    stages: tuple[Stage, ...]
    source: str = ""
    refs: dict[str, set[str]] = field(default_factory=dict)  # stage id -> ids it reads

    def stage(self, sid: str) -> Stage:
        for s in self.stages:
            if s.id == sid:
                return s
        raise RecipeError(f"{self.source}: no stage {sid!r} (stages: {', '.join(self.ids())})")

    def ids(self) -> list[str]:
        return [s.id for s in self.stages]


def _keys(obj: object, required: set[str], optional: set[str], where: str) -> dict:
    if not isinstance(obj, dict):
        raise RecipeError(f"{where}: expected a mapping, got {type(obj).__name__}")
    unknown = set(obj) - required - optional
    if unknown:
        raise RecipeError(f"{where}: unknown key(s) {', '.join(sorted(map(str, unknown)))}")
    missing = required - set(obj)
    if missing:
        raise RecipeError(f"{where}: missing {', '.join(sorted(missing))}")
    return obj


def _scalar(value: object, where: str) -> object:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, list) and all(isinstance(v, (str, int, float)) for v in value):
        return value
    raise RecipeError(f"{where}: expected a string, number, boolean or list of them")


def refs_in(value: object) -> set[str]:
    texts = value if isinstance(value, list) else [value]
    return {m for t in texts if isinstance(t, str) for m in REF.findall(t)}


def parse(doc: object, source: str) -> Recipe:
    d = _keys(doc, {"version", "name", "stages"}, {"description", "settings", "inputs"}, source)
    if d["version"] != VERSION:
        raise RecipeError(f"{source}: version {d['version']!r}; this weightprep reads version 1")
    if not isinstance(d["name"], str) or not ID.match(d["name"]):
        raise RecipeError(f"{source}: name must be lowercase letters, digits and '-'")
    settings = d.get("settings") or {}
    _keys(
        settings,
        set(),
        set(settings) if isinstance(settings, dict) else set(),
        f"{source}: settings",
    )
    for k, v in settings.items():
        _scalar(v, f"{source}: settings.{k}")
    inputs = d.get("inputs") or {}
    _keys(inputs, set(), set(inputs) if isinstance(inputs, dict) else set(), f"{source}: inputs")
    for k, v in inputs.items():
        if not isinstance(v, str) or not v:
            raise RecipeError(f"{source}: inputs.{k} must be a path or hf:// / gdrive:// source")
    if not isinstance(d["stages"], list) or not d["stages"]:
        raise RecipeError(f"{source}: stages must be a non-empty list")
    stages: list[Stage] = []
    refs: dict[str, set[str]] = {}
    for i, raw in enumerate(d["stages"]):
        where = f"{source}: stages[{i}]"
        s = _keys(raw, {"id", "run"}, {"with", "when"}, where)
        sid, kind = s["id"], s["run"]
        if not isinstance(sid, str) or not ID.match(sid):
            raise RecipeError(f"{where}: id must be lowercase letters, digits and '-'")
        if sid in refs or sid in ("inputs", "settings"):
            raise RecipeError(f"{where}: id {sid!r} used twice or reserved")
        if kind not in STAGE_KINDS:
            raise RecipeError(
                f"{where} ({sid}): unknown stage {kind!r}; one of {', '.join(STAGE_KINDS)}"
            )
        required, optional = STAGE_KINDS[kind]
        opts = _keys(s.get("with") or {}, required, optional, f"{where} ({sid}) with")
        for k, v in opts.items():
            _scalar(v, f"{where} ({sid}) with.{k}")
        when = s.get("when")
        if when is not None and not isinstance(when, str):
            raise RecipeError(f"{where} ({sid}): when must be a string")
        used = set()
        for r in refs_in(list(opts.values()) + ([when] if when else [])):
            head, _, rest = r.partition(".")
            if head == "inputs":
                if rest not in inputs:
                    raise RecipeError(f"{where} ({sid}): unknown input ${{{r}}}")
            elif head == "settings":
                if rest not in settings:
                    raise RecipeError(f"{where} ({sid}): unknown setting ${{{r}}}")
            elif r in refs:
                used.add(r)
            else:
                raise RecipeError(f"{where} ({sid}): ${{{r}}} is not an earlier stage")
        refs[sid] = used
        stages.append(Stage(sid, kind, dict(opts), when))
    return Recipe(
        d["name"],
        str(d.get("description", "")),
        dict(settings),
        dict(inputs),
        tuple(stages),
        source,
        refs,
    )


def load(path: Path) -> Recipe:

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RecipeError(f"{path}: cannot read recipe ({exc})") from None
    return parse(_yaml(text, str(path)), str(path))


def _yaml(text: str, where: str) -> object:
    """YAML without aliases (a recipe has no use for them; an alias bomb would expand)."""
    import yaml

    from weightprep.manifest import safe_load_no_aliases

    try:
        return safe_load_no_aliases(text)
    except yaml.YAMLError as exc:
        raise RecipeError(f"{where}: not valid YAML ({str(exc).splitlines()[0]})") from None
    except RecursionError:
        raise RecipeError(f"{where}: not valid YAML (nested too deeply)") from None


def shipped() -> dict[str, str]:
    """Name -> YAML text of the recipes that ship with weightprep."""
    from importlib.resources import files

    out = {}
    for entry in sorted(files("weightprep.recipes").iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".yaml"):
            out[entry.name.removesuffix(".yaml")] = entry.read_text(encoding="utf-8")
    return out


def resolve(arg: str) -> Recipe:
    """A recipe file, or the name of a shipped recipe."""

    p = Path(arg).expanduser()
    if p.is_file():
        return load(p)
    known = shipped()
    if arg in known:
        return parse(_yaml(known[arg], f"recipes/{arg}.yaml"), f"recipes/{arg}.yaml")
    raise RecipeError(f"{arg}: no such file, and not a shipped recipe ({', '.join(known)})")


def apply_sets(recipe: Recipe, sets: list[str]) -> Recipe:
    """`--set KEY=VALUE` (settings) and `--set inputs.NAME=VALUE`."""
    settings, inputs = dict(recipe.settings), dict(recipe.inputs)
    for item in sets:
        key, eq, value = item.partition("=")
        if not eq:
            raise RecipeError(f"--set {item}: expected KEY=VALUE")
        if key.startswith("inputs."):
            name = key.removeprefix("inputs.")
            if name not in inputs:
                raise RecipeError(f"--set {item}: the recipe has no input {name!r}")
            inputs[name] = value
        else:
            if key not in settings:
                raise RecipeError(
                    f"--set {item}: unknown setting {key!r} (settings: {', '.join(settings)})"
                )
            old = settings[key]
            settings[key] = _coerce(value, old, item)
    return Recipe(
        recipe.name, recipe.description, settings, inputs, recipe.stages, recipe.source, recipe.refs
    )


def _coerce(value: str, like: object, item: str) -> object:
    if isinstance(like, bool):
        if value.lower() in ("1", "true", "yes", "on"):
            return True
        if value.lower() in ("0", "false", "no", "off"):
            return False
        raise RecipeError(f"--set {item}: expected true or false")
    if isinstance(like, int):
        try:
            return int(value)
        except ValueError:
            raise RecipeError(f"--set {item}: expected an integer") from None
    return value
