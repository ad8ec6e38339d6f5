"""Run a smoke test: load, prompt, check, time. Returns a report; never prints."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from weightprep.errors import InputError, VerificationError
from weightprep.language import check_loaded
from weightprep.smoke import checks, runtime
from weightprep.smoke.checks import Check
from weightprep.smoke.image import blank_like, collect
from weightprep.smoke.specs import SPECS, ModelSpec, Run

SEED = 0


@dataclass
class Options:
    model: str
    weights: str | None = None
    llm: str | None = None
    vision: str | None = None
    # image files and/or folders of them (smoke.image.collect); none: the built-in drawing
    images: tuple[Path, ...] = ()
    prompts: tuple[str, ...] = ()  # replace the model's prompts; every image gets every one
    device: str = "auto"
    dtype: str = "auto"
    quantize: str = "none"
    max_new_tokens: int = 64
    expect: tuple[str, ...] = ()
    revision: str | None = None
    example: bool = False  # the built-in tiny example: said plainly in the report
    # False builds prompts without the image placeholder tokens, as a caller unaware of
    # transformers 5.x's scheme would; the "image matters" check must then fail (tests use it).
    image_placeholders: bool = True
    reference_text: Path | None = None  # the language check's passage (default: the family's)
    max_perplexity: float | None = None  # its bound (default: the family's)
    # False skips the language check: only for tests of the caption checks on tiny random LMs,
    # which that check rightly fails before any caption is made. No command line sets it.
    language_check: bool = True
    # False leaves Report.sources empty: it hashes every file of each loaded folder (a 7B model
    # is 14 GB), and only the HTML page and --json show it, so the CLI asks for it only then.
    sources: bool = True


@dataclass
class PromptResult:
    prompt: str
    mode: str
    answer: str
    tokens: int
    seconds: float
    tokens_per_second: float
    checks: list[Check]
    image: str = ""  # the image's name (smoke.image.Picture.name)


@dataclass
class Report:
    model: str
    backend: str
    example: bool
    device: str
    dtype: str
    dtype_reason: str
    quantize: str
    weights: str
    llm: str | None
    load_seconds: float
    peak_memory: tuple[str, int] = ("rss", 0)
    notes: list[str] = field(default_factory=list)
    results: list[PromptResult] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)  # the run-wide ones
    language: dict | None = None  # the language check's figures (weightprep.language)
    images: list[dict] = field(default_factory=list)  # smoke.image.Picture.describe()
    sources: list[dict] = field(default_factory=list)  # smoke.sources.describe()

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.all_checks() if not c.ok]

    def all_checks(self) -> list[Check]:
        return [c for r in self.results for c in r.checks] + self.checks

    @property
    def ok(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict:
        d = asdict(self)
        d["peak_memory"] = {"kind": self.peak_memory[0], "bytes": self.peak_memory[1]}
        d["ok"] = self.ok
        return d


def spec_for(name: str) -> ModelSpec:
    if name not in SPECS:
        raise InputError(f"unknown model {name!r}; one of: {', '.join(SPECS)}")
    return SPECS[name]


def runs_for(spec: ModelSpec, prompts: tuple[str, ...]) -> tuple[Run, ...]:
    """The spec's runs, or the user's prompts, each decoded as the spec's first run is (one
    answer per image and prompt)."""
    if not prompts:
        return spec.runs
    first = spec.runs[0]
    return tuple(Run(p, first.mode, first.generate) for p in prompts)


def load_pipeline(spec: ModelSpec, opts: Options, placement: runtime.Placement):
    weights = opts.weights or spec.weights
    if spec.family == "instructblip":
        from weightprep.smoke import instructblip as fam
    elif spec.family == "vipllava":
        from weightprep.smoke import vipllava as fam
    elif spec.family == "blip2":
        from weightprep.smoke import blip2 as fam
    else:
        from weightprep.smoke import minigpt4

        return minigpt4.load(spec, weights, opts.llm, placement, opts.revision, opts.vision)
    if opts.vision is not None:
        raise InputError(f"{spec.name}: --vision applies only to rinna-minigpt4")
    return fam.load(spec, weights, opts.llm, placement, opts.revision)


def run_prompt(
    pipe, picture, image, run: Run, max_new_tokens: int, placeholders: bool = True
) -> PromptResult:
    """One answer and its checks: finite logits, non-empty, not repetitive, and the image
    matters (this prompt's first-token logits against the same prompt with a blank image)."""
    inputs = pipe.encode(image, run.prompt, image_tokens=placeholders)
    logits = pipe.next_logits(inputs)
    found = [checks.finite_logits(logits)]
    if not found[0].ok:  # sampling from NaN would crash; the reason is already known
        return PromptResult(run.prompt, run.mode, "", 0, 0.0, 0.0, found, picture.name)
    torch.manual_seed(SEED)
    start = time.perf_counter()
    ids = pipe.generate(inputs, dict(run.generate), max_new_tokens)
    seconds = time.perf_counter() - start
    answer = pipe.decode(ids)
    found += [checks.non_empty(answer, len(ids)), checks.not_degenerate(ids)]
    blank = pipe.encode(blank_like(image), run.prompt, image_tokens=placeholders)
    found.append(checks.image_matters(logits, pipe.next_logits(blank)))
    rate = len(ids) / seconds if seconds > 0 else 0.0
    return PromptResult(run.prompt, run.mode, answer, len(ids), seconds, rate, found, picture.name)


def refuse_delta(llm: str | None) -> None:
    """A local --llm folder that holds delta weights is refused before anything is loaded: a
    delta loads as a model without error and captions nonsense."""
    if llm is None or not Path(llm).expanduser().is_dir():
        return
    from weightprep.inspect import delta_evidence

    evidence = delta_evidence(Path(llm).expanduser())
    if evidence is not None and evidence[0]:
        raise VerificationError(
            f"{llm}: delta weights, not a model ({evidence[1]}); apply the delta to its base "
            "first (weightprep apply-delta) and pass the result as --llm"
        )


def check_sources(spec: ModelSpec, opts: Options) -> None:
    """Every folder given is checked before the Hub is asked anything: a missing one is 'no
    such folder' (exit 2) at once, not a Hub lookup that fails after retries. A NAMESPACE/NAME
    that is not a folder is a Hub id; when there is one, the Hub must be reachable (one line,
    exit 3, within the retry budget, when it is not; HF_HUB_OFFLINE=1 uses the HF cache)."""
    from weightprep.remote.location import looks_like_hub_id

    given = (
        ("--llm", opts.llm, spec.llm),
        ("--weights", opts.weights, spec.weights),
        ("--vision", opts.vision, spec.vision),
    )
    hub_ids = []
    for flag, ref, default in given:
        if ref is None:
            if default is not None:
                hub_ids.append(f"{flag} {default} (the default)")
            continue
        path = Path(ref).expanduser()
        if path.exists():
            if not path.is_dir():
                raise InputError(f"{flag} {ref}: not a folder")
        elif looks_like_hub_id(ref):
            hub_ids.append(f"{flag} {ref}")
        else:
            raise InputError(f"{flag} {ref}: no such folder (a Hub id is written NAMESPACE/NAME)")
    if hub_ids:
        from weightprep.remote import hub

        hub.reach(
            f"smoke-test {hub_ids[0]}",
            hint="check the network, give local folders, or set HF_HUB_OFFLINE=1 to use the "
            "HF cache",
        )


def sources_of(spec: ModelSpec, opts: Options) -> list[dict]:
    """What was loaded from where, with digests (smoke.sources.describe), for the report."""
    from weightprep.smoke.sources import describe

    given = (
        ("--weights", opts.weights or spec.weights, opts.revision),
        ("--llm", opts.llm or spec.llm, None),
        ("--vision", opts.vision or spec.vision, None),
    )
    return [describe(flag, ref, rev) for flag, ref, rev in given if ref is not None]


def run_smoke(opts: Options) -> Report:
    from weightprep.extras import require_smoke

    spec = spec_for(opts.model)
    require_smoke(f"smoke-test --model {spec.name}")
    check_sources(spec, opts)
    refuse_delta(opts.llm)
    placement = runtime.choose(opts.device, opts.dtype, opts.quantize, spec.cuda_dtype)
    pictures, skipped = collect(opts.images)
    runtime.reset_peak()
    start = time.perf_counter()
    pipe = load_pipeline(spec, opts, placement)
    report = Report(
        model=spec.name,
        backend="transformers",
        example=opts.example,
        device=placement.device,
        dtype=placement.dtype,
        dtype_reason=placement.reason,
        quantize=placement.quantize,
        weights=opts.weights or spec.weights,
        llm=opts.llm or spec.llm,
        load_seconds=time.perf_counter() - start,
        notes=skipped + list(pipe.notes),
        images=[p.describe() for p in pictures],
    )
    if opts.sources:
        report.sources = sources_of(spec, opts)
    lm, tok, cfg = pipe.text_model()
    lang = (
        check_loaded(
            lm, tok, cfg, reference=opts.reference_text, max_perplexity=opts.max_perplexity
        )
        if opts.language_check
        else None
    )
    if not opts.language_check:
        report.notes.append("language check not run (tests only)")
    elif lang is None:
        report.notes.append(f"language check not run: no bound for {cfg.model_type} models")
    else:
        report.language = lang.to_dict()
        report.checks.append(Check("language check", lang.ok, lang.detail))
        if not lang.ok:
            report.notes.append(
                "captioning skipped: the language model fails the language check, so its "
                "captions would prove nothing (wrong base, a delta, random or corrupt weights?)"
            )
            report.peak_memory = runtime.peak_memory(placement.device)
            return report
    for picture in pictures:
        image = picture.load()
        for run in runs_for(spec, opts.prompts):
            report.results.append(
                run_prompt(pipe, picture, image, run, opts.max_new_tokens, opts.image_placeholders)
            )
    if opts.expect:
        report.checks.append(checks.expected_words([r.answer for r in report.results], opts.expect))
    report.peak_memory = runtime.peak_memory(placement.device)
    return report
