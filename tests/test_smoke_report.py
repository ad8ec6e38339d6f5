"""smoke-test on many images and prompts, and its HTML report opened in a real headless browser
(Debian's chromium: `make test` installs it)."""

from __future__ import annotations

import ast
import html.parser
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from PIL import Image, ImageDraw
from typer.testing import CliRunner

from weightprep.cli.app import app
from weightprep.smoke.example import build
from weightprep.smoke.report import render
from weightprep.smoke.runner import Options, run_smoke

CHROMIUM = Path("/usr/bin/chromium")
MODEL = "instructblip-vicuna7b"
# Colours no part of the page's own style comes near: found in the screenshot, they are the images.
COLOURS = {"magenta.png": (230, 20, 200), "cyan.jpg": (20, 220, 230), "orange.png": (250, 140, 10)}
PROMPTS = ["What is in this picture?", "Why is it funny?"]

runner = CliRunner()


@pytest.fixture(scope="module")
def example(converted, tmp_path_factory) -> dict[str, str]:
    """The tiny InstructBLIP around the trained example LLaMA: --llm and --weights."""
    return build(MODEL, tmp_path_factory.mktemp("vlm") / "iblip", converted("7B", "float16"))


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """Three images (a coloured block on light grey, 200x150), a note and a hidden file."""
    root = tmp_path_factory.mktemp("images") / "cartoons"
    root.mkdir()
    for name, colour in COLOURS.items():
        img = Image.new("RGB", (200, 150), (235, 235, 235))
        ImageDraw.Draw(img).rectangle([20, 20, 180, 130], fill=colour)
        img.save(root / name, quality=95)
    (root / "notes.txt").write_text("captions to try next week\n")
    (root / ".DS_Store").write_bytes(b"\0\1\2")
    return root


def _flags(example: dict[str, str]) -> list[str]:
    return ["--example", *(f"--{k}={v}" for k, v in example.items()), "--max-new-tokens", "8"]


def _printed(stdout: str) -> list[dict]:
    """The answers the human report printed: image, prompt, answer and check lines."""
    out: list[dict] = []
    image = None
    for line in stdout.splitlines():
        if line.startswith("image "):
            image = line.removeprefix("image ")
        elif line.startswith("[beam] "):
            out.append({"image": image, "prompt": line.removeprefix("[beam] "), "checks": []})
        elif line.startswith("  -> "):
            out[-1]["answer"] = ast.literal_eval(line.removeprefix("  -> "))
        elif out and re.match(r"  (ok  |FAIL) ", line):
            out[-1]["checks"].append(line.strip())
    return out


@pytest.fixture(scope="module")
def cli_run(example, folder, tmp_path_factory):
    """One CLI run: the folder, two --prompt, --report."""
    report = tmp_path_factory.mktemp("report") / "report.html"
    args = ["smoke-test", *_flags(example), "--image", str(folder), "--report", str(report)]
    for p in PROMPTS:
        args += ["--prompt", p]
    res = runner.invoke(app, args)
    return res, report


def _chromium(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    if not CHROMIUM.exists():
        pytest.skip("/usr/bin/chromium missing: `make test` installs it (apt-get install chromium)")
    profile = tmp / f"profile-{len(list(tmp.glob('profile-*')))}"
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
    ]
    res = subprocess.run(
        [str(CHROMIUM), *flags, *args], capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0, res.stderr[-2000:]
    return res


class _Text(html.parser.HTMLParser):
    """The text a reader sees, and the tags present."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag, attrs) -> None:
        self.tags.append(tag)

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def _page_text(dom: str) -> tuple[str, list[str]]:
    p = _Text()
    p.feed(dom)
    return " ".join(" ".join(p.parts).split()), p.tags


def _norm(s: str) -> str:
    return " ".join(s.split())


# --- many images, many prompts -----------------------------------------------------------------


def test_folder_and_prompts_give_every_answer_checked(cli_run, folder):
    res, _ = cli_run
    assert res.exit_code == 0, res.output
    answers = _printed(res.stdout)
    # three images x two prompts, in name order, each with its four checks
    assert [(a["image"], a["prompt"]) for a in answers] == [
        (str(folder / name), p) for name in sorted(COLOURS) for p in PROMPTS
    ]
    for a in answers:
        assert [c.split(":")[0] for c in a["checks"]] == [
            "ok   finite logits",
            "ok   non-empty answer",
            "ok   not repetitive",
            "ok   image matters",
        ]
        assert a["answer"]
    assert res.stdout.count("ok   language check") == 1  # once per model
    # the note: one line naming it; the hidden file is passed over
    named = [line for line in res.stdout.splitlines() if "notes.txt" in line]
    assert named == [f"  note: skipped {folder / 'notes.txt'}: not an image PIL can read"]
    assert ".DS_Store" not in res.output


def test_image_file_and_folder_errors_are_one_line(example, folder, tmp_path):
    bad = runner.invoke(app, ["smoke-test", *_flags(example), "--image", str(folder / "notes.txt")])
    assert bad.exit_code == 2 and bad.stderr.count("\n") == 1
    assert "notes.txt: not an image" in bad.stderr
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "a.txt").write_text("x")
    bad = runner.invoke(app, ["smoke-test", *_flags(example), "--image", str(tmp_path / "empty")])
    assert bad.exit_code == 2 and "no image PIL can read" in bad.stderr
    bad = runner.invoke(
        app, ["smoke-test", *_flags(example), "--report", str(tmp_path / "no" / "r.html")]
    )
    assert bad.exit_code == 2 and "--report" in bad.stderr and "does not exist" in bad.stderr


# --- the report, in a real browser -------------------------------------------------------------


def test_report_is_self_contained(cli_run):
    page = cli_run[1].read_text()
    assert "<script" not in page and "<link" not in page
    refs = re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)""", page)
    assert len(refs) == 3 and all(r.startswith("data:image/jpeg;base64,") for r in refs)
    assert "http://" not in page and "https://" not in page and "url(" not in page


def test_report_screenshot_shows_the_images(cli_run, tmp_path):
    shot = tmp_path / "report.png"
    _chromium(tmp_path, f"--screenshot={shot}", "--window-size=1200,2200", cli_run[1].as_uri())
    img = Image.open(shot).convert("RGB")
    px = img.load()
    w, h = img.size
    for name, colour in COLOURS.items():
        near = sum(
            1
            for x in range(0, w, 2)
            for y in range(0, h, 2)
            if max(abs(a - b) for a, b in zip(px[x, y], colour, strict=True)) < 24
        )
        # the 160x110 block, shown at its size, sampled every 2nd pixel: ~4400 points
        assert near > 3000, f"{name}: colour {colour} found at {near} sampled points"
    if os.environ.get("WEIGHTPREP_SAVE_SCREENSHOT"):  # refresh docs/smoke-report.png
        shutil.copy(shot, os.environ["WEIGHTPREP_SAVE_SCREENSHOT"])


def test_report_dom_holds_every_answer_and_check(cli_run, tmp_path):
    res, report = cli_run
    dom = _chromium(tmp_path, "--dump-dom", report.as_uri()).stdout
    text, tags = _page_text(dom)
    answers = _printed(res.stdout)
    assert len(answers) == 6
    for a in answers:
        assert _norm(a["answer"]) in text, a
        assert _norm(a["image"]) in text
        for check in a["checks"]:
            name, detail = check.removeprefix("ok   ").split(": ", 1)
            assert f"{name} PASS {_norm(detail)}" in text
    lang = next(line for line in res.stdout.splitlines() if "language check" in line)
    assert f"language check PASS {_norm(lang.split(': ', 1)[1])}" in text
    assert text.count("PASS") == 6 * 4 + 1 + 1  # every check, and the banner
    for what in ("device cpu", "dtype", "load time", "tokens/s", "peak memory", "sha256"):
        assert what in text
    assert tags.count("img") == 3
    assert "--llm" in text and "model.safetensors" in text  # what was loaded, with digests


def test_failed_checks_are_marked_and_answers_escaped(example, folder, tmp_path):
    """A prompt without image tokens: "image matters" fails and the page says FAIL for it; an
    answer holding markup shows as text, never as markup."""
    report = run_smoke(
        Options(
            model=MODEL,
            **example,
            images=(folder / "cyan.jpg",),
            prompts=(PROMPTS[0],),
            max_new_tokens=4,
            example=True,
            image_placeholders=False,
        )
    )
    doc = report.to_dict()
    hostile = "<script>document.title='pwned'</script><marquee>moving</marquee> & <img src=x>"
    doc["results"][0]["answer"] = hostile
    page = tmp_path / "failed.html"
    page.write_text(render(doc))
    dom = _chromium(tmp_path, "--dump-dom", page.as_uri()).stdout
    text, tags = _page_text(dom)
    assert "FAIL: 1 of 5 checks failed" in text
    assert re.search(r"image matters FAIL image ignored: logits with a blank image differ", text)
    assert hostile in text
    assert "script" not in tags and "marquee" not in tags and tags.count("img") == 1


def test_run_links_the_report_from_run_md(example, tmp_path):
    recipe = tmp_path / "smoke.yaml"
    recipe.write_text(
        yaml.safe_dump(
            {
                "version": 1,
                "name": "smoke-only",
                "inputs": {"llm": example["llm"], "weights": example["weights"]},
                "stages": [
                    {
                        "id": "smoke",
                        "run": "smoke-test",
                        "with": {
                            "model": MODEL,
                            "llm": "${inputs.llm}",
                            "weights": "${inputs.weights}",
                            "example": True,
                            "max_new_tokens": 4,
                        },
                    }
                ],
            }
        )
    )
    wd = tmp_path / "wd"
    res = runner.invoke(app, ["run", str(recipe), "--workdir", str(wd), "-q"])
    assert res.exit_code == 0, res.output
    md = (wd / "RUN.md").read_text()
    assert "[smoke-report.html](smoke-report.html)" in md
    page = (wd / "smoke-report.html").read_text()
    assert "PASS: all" in page and "Write a short description for the image." in page
