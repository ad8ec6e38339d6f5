"""docs/colab.ipynb executed by a real Jupyter kernel (nbclient + ipykernel), its parameters
pointed at the stand-in Drive server and the tiny example; and weightprep's progress in a kernel
and under a notebook's `!`."""

from __future__ import annotations

import html
import os
import re
import shlex
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from PIL import Image, ImageDraw

from tests.conftest import REPO
from weightprep.smoke.example import build
from weightprep.smoke.runner import Options, run_smoke

NOTEBOOK = REPO / "docs" / "colab.ipynb"
TOKEN = "ya29.stand-in-colab-token"
PROMPTS = ["Write a short description for the image.", "What is funny here?"]
CURSOR = re.compile(r"\x1b\[\d*[ABCDEFGJKST]|\x1b\[\?25[lh]")  # cursor moves, erasures


def _kernel_env(monkeypatch) -> None:
    """The kernel inherits this process's environment: put our `weightprep` first on PATH."""
    bin_dir = str(Path(sys.executable).parent)
    monkeypatch.setenv("PATH", bin_dir + os.pathsep + os.environ.get("PATH", ""))
    monkeypatch.delenv("WEIGHTPREP_DEBUG", raising=False)


def _execute(nb, cwd: Path):
    client = NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}
    )
    return client.execute()


def _stream(cell) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


def _shown(text: str) -> list[str]:
    """The lines a notebook shows for a stream: each line as its last `\\r` left it."""
    text = text.replace("\r\n", "\n")  # a pty's newline
    return [line.rsplit("\r", 1)[-1] for line in text.split("\n")]


def _seed_drive(drive, folder: Path, top: str) -> None:
    ids = {Path("."): drive.add_file(top)}
    for f in sorted(folder.rglob("*")):
        rel = f.relative_to(folder)
        if f.is_dir():
            ids[rel] = drive.add_file(f.name, parent=ids[rel.parent])
        else:
            drive.add_file(f.name, f.read_bytes(), parent=ids[rel.parent])


def _images(folder: Path) -> Path:
    folder.mkdir()
    for name, colour in {"one.png": (200, 30, 40), "two.jpg": (30, 60, 200)}.items():
        img = Image.new("RGB", (160, 120), (240, 240, 240))
        ImageDraw.Draw(img).ellipse([20, 10, 140, 110], fill=colour)
        img.save(folder / name)
    (folder / "notes.txt").write_text("not a picture\n")
    return folder


def test_colab_notebook_runs_end_to_end(converted, drive_stand_in, monkeypatch, tmp_path):
    """Every cell runs against the stand-in Drive (a Colab runtime has `google.colab`; this
    kernel does not, so each Colab-only cell takes its local branch), and the last cell's report
    holds each image's answers, equal to an independent run's."""
    llm = converted("7B", "float16")
    _seed_drive(drive_stand_in(TOKEN), llm, "tiny-vicuna")
    iblip = build("instructblip-vicuna7b", tmp_path / "iblip", llm)["weights"]
    images = _images(tmp_path / "cartoons")
    weights = tmp_path / "vicuna"
    report = tmp_path / "report.html"
    _kernel_env(monkeypatch)

    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert all(c.get("outputs", []) == [] for c in nb.cells if c.cell_type == "code")
    params = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    overrides = {
        "SOURCE": "gdrive://root/tiny-vicuna",
        "WEIGHTS": str(weights),
        "MANIFEST": str(llm / "SHA256SUMS"),
        "IMAGES": str(images),
        "PROMPTS": PROMPTS,
        "REPORT": str(report),
        "CREDENTIALS": "auto",
        "INSTALL": "",
        "SMOKE_FLAGS": f"--example --weights {shlex.quote(iblip)} --max-new-tokens 8",
    }
    injected = "\n".join(f"{k} = {v!r}" for k, v in overrides.items())
    nb.cells.insert(
        params + 1, nbformat.v4.new_code_cell(injected, metadata={"tags": ["injected"]})
    )
    done = _execute(nb, tmp_path)

    code = [c for c in done.cells if c.cell_type == "code"]
    assert all(c.execution_count for c in code)  # every cell ran (an error stops the run)
    text = {i: _stream(c) for i, c in enumerate(code)}
    out = "\n".join(text.values())
    assert "a local Jupyter kernel" in out
    assert "credentials from the environment: GOOGLE_OAUTH_ACCESS_TOKEN" in out
    assert TOKEN not in out
    assert sorted(p.name for p in weights.iterdir()) == sorted(p.name for p in llm.iterdir())
    fetch = _stream(next(c for c in code if "!weightprep fetch" in c.source))
    # the fetch's bars: one line per task in the cell (redrawn with \r), no cursor movements
    bars = [line for line in _shown(fetch) if re.search(r"\[#* *\] +\d+%", line)]
    labels = [line.split(" [")[0] for line in bars]
    assert labels and len(labels) == len(set(labels)), fetch
    assert any(label.startswith("fetch ") for label in labels)
    assert all("100%" in line for line in bars), fetch
    assert not CURSOR.search(out)
    assert f"skipped {images / 'notes.txt'}" in out and "PASS" in out

    (shown,) = [o for o in code[-1].outputs if o.output_type == "display_data"]
    assert [o for o in code[-1].outputs if o is not shown] == [], code[-1].outputs
    page = html.unescape(re.search(r'srcdoc="([^"]*)"', shown["data"]["text/html"]).group(1))
    assert page == report.read_text()
    again = run_smoke(
        Options(
            model="instructblip-vicuna7b",
            llm=str(weights),
            weights=iblip,
            images=(images,),
            prompts=tuple(PROMPTS),
            max_new_tokens=8,
            example=True,
        )
    )
    assert len(again.results) == 4
    for r in again.results:
        assert html.escape(r.answer) in page and html.escape(r.image) in page


# --- progress in a kernel and under `!` ---------------------------------------------------------


def test_progress_renders_once_per_task_and_quiet_silences_it(tmp_path, monkeypatch):
    """Inside a kernel: one display per task, updated in place. Under `!weightprep` (a pty,
    a child of the kernel): one line redrawn with \\r. --quiet: nothing."""
    _kernel_env(monkeypatch)
    data = tmp_path / "data"
    data.mkdir()
    for i in range(3):
        (data / f"f{i}.bin").write_bytes(os.urandom(300_000))
    cells = [
        "import weightprep.cli.progress as c\n"
        "c.REDRAW_SECONDS = 0\n"
        "p = c.make_progress(False)\n"
        "p.start(30, 'task one')\n"
        "for i in range(30):\n"
        "    p.advance(1, f'item {i}')\n"
        "p.finish()\n"
        "p = c.make_progress(False)\n"
        "p.start(10, 'task two')\n"
        "for i in range(10):\n"
        "    p.advance(1)\n"
        "p.finish()",
        "p = c.make_progress(True)\np.start(10, 'quiet task')\np.advance(10)\np.finish()",
        f"!weightprep hash {data} -o {tmp_path / 'a.yaml'}",
        f"!weightprep hash {data} -o {tmp_path / 'b.yaml'} --quiet",
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in cells])
    done = _execute(nb, tmp_path)
    kernel, quiet, bang, bang_quiet = done.cells

    shown = [o for o in kernel.outputs if o.output_type == "display_data"]
    assert len(kernel.outputs) == len(shown) == 2  # one per task, each updated in place
    assert [o["data"]["text/plain"].split(" [")[0] for o in shown] == ["task one", "task two"]
    assert all("100%" in o["data"]["text/plain"] for o in shown)
    assert quiet.outputs == []

    text = _stream(bang)
    lines = [line for line in _shown(text) if line.startswith(f"hash {data.name} ")]
    assert len(lines) == 1 and "100%" in lines[0], text
    assert "\r" in text and not CURSOR.search(text)
    assert f"hash {data.name}" not in _stream(bang_quiet)
    assert (tmp_path / "a.yaml").is_file() and (tmp_path / "b.yaml").is_file()
