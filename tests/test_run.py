"""run RECIPE: end to end, skipping what is done, re-running what changed, surviving kills."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from weightprep.cli.app import app
from weightprep.errors import DiskSpaceError
from weightprep.recipe import engine, preflight
from weightprep.recipe.schema import RecipeError, parse, resolve, shipped

runner = CliRunner()


def _statuses(workdir: Path) -> dict[str, str]:
    doc = json.loads((workdir / "run.json").read_text())
    return {s["id"]: s["status"] for s in doc["stages"]}


def _files(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_example_end_to_end_then_everything_skipped(tmp_path):
    wd = tmp_path / "wd"
    res = runner.invoke(app, ["run", "example", "--workdir", str(wd)])
    assert res.exit_code == 0, res.output
    assert _statuses(wd) == {
        "llama": "ran",
        "convert": "off",  # the one-pass route: no converted LLaMA written
        "delta": "ran",
        "vicuna": "ran",
        "instructblip": "ran",
        "publish": "off",
        "smoke": "ran",
    }
    doc = json.loads((wd / "run.json").read_text())
    vicuna = next(s for s in doc["stages"] if s["id"] == "vicuna")
    assert vicuna["outputs"]["SHA256SUMS"] and vicuna["inputs"]  # digests recorded
    smoke = next(s for s in doc["stages"] if s["id"] == "smoke")
    assert smoke["result"]["smoke_test"]["ok"] is True
    assert {"weightprep", "torch", "transformers"} <= set(doc["versions"])
    md = (wd / "RUN.md").read_text()
    assert "smoke test: PASS" in md
    # every stage says what it compared, and the language check's figures are in the record
    assert all(s["result"].get("compared") for s in doc["stages"] if s["status"] == "ran")
    assert "compared: nothing compared: made here by weightprep" in md
    assert "21 tensor digests and 0 file digests of tiny-delta-expected" in md
    assert "input: consolidated.00.pth: md5 OK" in vicuna["result"]["compared"]  # same read
    assert md.count("language check: PASS: base: perplexity") == 1
    assert "language check: PASS: output: perplexity" in md
    assert "language check: PASS: perplexity" in md  # the smoke test's, on the loaded model
    assert [c["ok"] for c in vicuna["result"]["language_check"]] == [True, True]
    assert smoke["result"]["smoke_test"]["language"]["perplexity"] < 50
    res = runner.invoke(app, ["run", "example", "--workdir", str(wd)])
    assert res.exit_code == 0
    assert "0 stage(s) ran" in res.stdout and "0 to run" in res.stdout
    assert set(_statuses(wd).values()) == {"skipped", "off"}


def _custom(tmp_path: Path, meta_root: Path) -> Path:
    doc = {
        "version": 1,
        "name": "custom",
        "settings": {"dtype": "float16", "keep_intermediate": True, "publish_to": ""},
        "inputs": {"llama": str(meta_root)},
        "stages": [
            {
                "id": "convert",
                "run": "convert-llama",
                "with": {
                    "input": "${inputs.llama}",
                    "model_size": "7B",
                    "dtype": "${settings.dtype}",
                },
            },
            {"id": "delta", "run": "make-example-delta", "with": {"base": "${convert}"}},
            {
                "id": "vicuna",
                "run": "apply-delta",
                "with": {
                    "base": "${convert}",
                    "delta": "${delta}",
                    "verify": True,
                    "manifest": "${delta}/expected.yaml",
                },
            },
            {
                "id": "copy",
                "run": "publish",
                "when": "${settings.publish_to}",
                "with": {"model": "${vicuna}", "to": "${settings.publish_to}"},
            },
        ],
    }
    path = tmp_path / "custom.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.fixture
def own_meta(tmp_path, meta_root):
    import shutil

    root = tmp_path / "LLaMA"
    shutil.copytree(meta_root, root)
    return root


def test_changes_rerun_exactly_the_stages_that_depend_on_them(tmp_path, own_meta):
    recipe, wd = str(_custom(tmp_path, own_meta)), str(tmp_path / "wd")
    assert runner.invoke(app, ["run", recipe, "--workdir", wd, "-q"]).exit_code == 0
    # a setting only the publish stage reads: only it runs
    dest = tmp_path / "published"
    res = runner.invoke(app, ["run", recipe, "--workdir", wd, "--set", f"publish_to={dest}", "-q"])
    assert res.exit_code == 0, res.output
    assert _statuses(Path(wd)) == {
        "convert": "skipped",
        "delta": "skipped",
        "vicuna": "skipped",
        "copy": "ran",
    }
    # a byte in a part of the download the converter does not read (13B/): nothing runs
    p = own_meta / "13B" / "params.json"
    p.write_text(p.read_text() + " ")
    assert runner.invoke(app, ["run", recipe, "--workdir", wd, "-q"]).exit_code == 0
    assert set(_statuses(Path(wd)).values()) == {"skipped", "off"}
    # one byte of an input the converter reads but whose output does not change (a space in
    # 7B/params.json, its checklist updated): only convert runs again; its output is
    # bit-identical, so nothing after it runs
    import hashlib

    p = own_meta / "7B" / "params.json"
    p.write_text(p.read_text() + " ")
    chk = own_meta / "7B" / "checklist.chk"
    lines = [
        f"{hashlib.md5(p.read_bytes()).hexdigest()}  params.json"
        if ln.endswith("params.json")
        else ln
        for ln in chk.read_text().splitlines()
    ]
    chk.write_text("\n".join(lines) + "\n")
    assert runner.invoke(app, ["run", recipe, "--workdir", wd, "-q"]).exit_code == 0
    assert _statuses(Path(wd)) == {
        "convert": "ran",
        "delta": "skipped",
        "vicuna": "skipped",
        "copy": "off",
    }
    # an option that changes the converter's output: convert and everything downstream
    res = runner.invoke(app, ["run", recipe, "--workdir", wd, "--set", "dtype=bfloat16", "-q"])
    assert res.exit_code == 0, res.output
    assert _statuses(Path(wd)) == {"convert": "ran", "delta": "ran", "vicuna": "ran", "copy": "off"}
    # a damaged output is not taken for done
    shard = next((Path(wd) / "vicuna").glob("*.safetensors"))
    shard.write_bytes(shard.read_bytes()[:-1] + b"\0")
    res = runner.invoke(app, ["run", recipe, "--workdir", wd, "--set", "dtype=bfloat16", "--plan"])
    # the file, named; the plan only stats it (size or mtime changed): the run hashes it
    assert f"changed since it was made (size or mtime): {shard.name}" in res.stdout
    (Path(wd) / "vicuna" / "config.json").unlink()
    res = runner.invoke(app, ["run", recipe, "--workdir", wd, "--set", "dtype=bfloat16", "--plan"])
    assert "missing config.json" in res.stdout


@pytest.mark.parametrize(
    "fault",
    ["run-stage:1", "run-stage:2", "write:100000", "write:500000"],
    ids=["after-convert", "after-delta", "mid-convert", "mid-apply-delta"],
)
def test_sigkill_then_rerun_is_bit_identical(tmp_path, own_meta, fault):
    recipe = str(_custom(tmp_path, own_meta))
    clean = tmp_path / "clean"
    assert runner.invoke(app, ["run", recipe, "--workdir", str(clean), "-q"]).exit_code == 0
    wd = tmp_path / "killed"
    cmd = [sys.executable, "-m", "weightprep", "run", recipe, "--workdir", str(wd), "-q"]
    killed = subprocess.run(cmd, env={**os.environ, "WEIGHTPREP_FAULT": fault}, capture_output=True)
    assert killed.returncode == -signal.SIGKILL
    state = (
        json.loads((wd / "state.json").read_text())
        if (wd / "state.json").exists()
        else {"stages": {}}
    )
    finished = set(state["stages"])
    again = subprocess.run(cmd, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    st = _statuses(wd)
    for sid in ("convert", "delta", "vicuna"):
        assert st[sid] == ("skipped" if sid in finished else "ran"), (sid, st)
        assert _files(wd / sid) == _files(clean / sid)
    assert not list(wd.glob("*.partial"))


def test_preflight_refuses_when_disk_is_short(tmp_path, own_meta, monkeypatch):
    r = resolve(str(_custom(tmp_path, own_meta)))
    run = engine.Runner(r, tmp_path / "wd")
    plan = run.plan()

    monkeypatch.setattr(preflight, "free_bytes", lambda p: 1000)
    with pytest.raises(DiskSpaceError, match="missing"):
        run.run(plan)
    assert not (tmp_path / "wd" / "convert").exists()


def test_shipped_recipes_validate():
    assert {
        "example",
        "instructblip-vicuna7b",
        "instructblip-vicuna13b",
        "vip-llava-7b",
        "mblip-mt0-xl",
        "rinna-minigpt4",
    } <= set(shipped())
    for name in shipped():
        assert resolve(name).name == name
    res = runner.invoke(app, ["recipes", "show", "instructblip-vicuna7b"])
    assert (
        res.exit_code == 0
        and parse(yaml.safe_load(res.stdout), "shown").name == "instructblip-vicuna7b"
    )
    assert "example" in runner.invoke(app, ["recipes"]).stdout


def test_shipped_recipes_smoke_test_before_publishing():
    """A model that fails the smoke test (and its language check) is never uploaded."""
    for name in shipped():
        ids = [s.run for s in resolve(name).stages]
        if "publish" in ids and "smoke-test" in ids:
            assert ids.index("smoke-test") < ids.index("publish"), name


@pytest.mark.parametrize(
    "edit,message",
    [
        (lambda d: d.update(colour="red"), "unknown key"),
        (lambda d: d["stages"][0].update(run="convert-alpaca"), "unknown stage"),
        (lambda d: d["stages"][1]["with"].update(base="${nowhere}"), "not an earlier stage"),
        (lambda d: d["stages"][0]["with"].update(input="${inputs.missing}"), "unknown input"),
        (lambda d: d["stages"][0]["with"].pop("input"), "missing input"),
        (lambda d: d.update(version=2), "version"),
    ],
)
def test_bad_recipes_one_line_exit_2(tmp_path, meta_root, edit, message):
    doc = yaml.safe_load(_custom(tmp_path, meta_root).read_text())
    edit(doc)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(doc))
    res = runner.invoke(app, ["run", str(path), "--workdir", str(tmp_path / "wd")])
    assert res.exit_code == 2 and message in res.stderr and res.stderr.count("\n") == 1
    with pytest.raises(RecipeError):
        resolve(str(path))


def test_missing_input_folder_is_one_line(tmp_path, meta_root):
    recipe = str(_custom(tmp_path, meta_root))
    res = runner.invoke(
        app,
        [
            "run",
            recipe,
            "--workdir",
            str(tmp_path / "wd"),
            "--set",
            f"inputs.llama={tmp_path}/nope",
        ],
    )
    assert res.exit_code == 2 and "does not exist" in res.stderr


def test_instructblip_recipe_on_stand_ins(tmp_path, meta_root, converted, hub_stand_in):
    """The shipped seed recipe, run on tiny stand-ins: a tiny Meta download, the delta served
    under lmsys' repo id by the stand-in Hub, a LAVIS checkout with its config, and a tiny
    InstructBLIP under Salesforce's repo id for the smoke test."""
    from tests.test_lavis import write_config
    from weightprep.checksum import hash_tree
    from weightprep.example import make_delta_example
    from weightprep.manifest import Manifest, dump_yaml
    from weightprep.smoke.example import build

    manifest = tmp_path / "tiny-llama.yaml"
    manifest.write_text(dump_yaml(Manifest("tiny-llama", hash_tree(meta_root))))
    delta = make_delta_example(converted("7B", "float16"), tmp_path / "delta")
    iblip = tmp_path / "iblip"
    build("instructblip-vicuna7b", iblip, converted("7B", "float16"))
    hub_stand_in({"lmsys/vicuna-7b-delta-v1.1": delta, "Salesforce/instructblip-vicuna-7b": iblip})
    config = write_config(tmp_path / "LAVIS" / "lavis")
    wd = tmp_path / "wd"
    args = [
        "run",
        "instructblip-vicuna7b",
        "--workdir",
        str(wd),
        "--set",
        f"inputs.llama={meta_root}",
        "--set",
        f"inputs.lavis={tmp_path / 'LAVIS'}",
        "--set",
        f"llama_manifest={manifest}",
        "--set",
        "device=cpu",
        "-q",
    ]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert _statuses(wd) == {
        "input-delta": "ran",
        "convert": "off",  # one pass: Meta's download + the delta, no converted LLaMA
        "vicuna": "ran",
        "lavis": "ran",
        "publish": "off",
        "smoke": "ran",
    }
    doc = json.loads((wd / "run.json").read_text())
    by_id = {s["id"]: s for s in doc["stages"]}
    for sid in ("input-delta", "vicuna"):
        assert by_id[sid]["outputs"] and all(len(d) == 64 for d in by_id[sid]["outputs"].values())
    assert by_id["vicuna"]["inputs"]["inputs.llama"] and by_id["vicuna"]["inputs"]["inputs.delta"]
    assert yaml.safe_load(config.read_text())["model"]["llm_model"] == str(
        (wd / "vicuna").absolute()
    )
    assert by_id["smoke"]["result"]["smoke_test"]["ok"]
    md = (wd / "RUN.md").read_text()
    # no Vicuna tensor manifest exists: the record must not suggest that digests were compared
    assert "digests: nothing compared: no --manifest given" in md
    assert "language check: PASS: output: perplexity" in md
    assert "(manifest tiny-llama)" in by_id["vicuna"]["result"]["compared"]
    # every check in words: the preflight's, Meta's md5 checklist, the LAVIS file and its backup
    assert f"- OK inputs.llama: {meta_root} exists" in md
    assert "- input: consolidated.00.pth: md5 OK" in md
    assert f"- LAVIS: patched {config}: llm_model" in md
    assert f"the original is kept as {config}.weightprep-backup" in md
    assert (config.parent / (config.name + ".weightprep-backup")).is_file()
    res = runner.invoke(app, args)
    assert res.exit_code == 0 and set(_statuses(wd).values()) == {"skipped", "off"}, _statuses(wd)


def test_keep_intermediate_false_removes_after_use_and_stays_done(tmp_path, own_meta):
    recipe, wd = str(_custom(tmp_path, own_meta)), tmp_path / "wd"
    args = ["run", recipe, "--workdir", str(wd), "--set", "keep_intermediate=false", "-q"]
    assert runner.invoke(app, args).exit_code == 0
    assert not (wd / "convert").exists() and not (wd / "delta").exists()
    assert (wd / "vicuna" / "SHA256SUMS").exists()
    st = _statuses(wd)
    assert st["convert"] == "ran, then removed" and st["vicuna"] == "ran"
    assert runner.invoke(app, args).exit_code == 0
    assert _statuses(wd) == {
        "convert": "pruned",
        "delta": "pruned",
        "vicuna": "skipped",
        "copy": "off",
    }
    # the final output damaged: the removed stages come back to rebuild it
    shard = next((wd / "vicuna").glob("*.safetensors"))
    shard.write_bytes(b"\0" + shard.read_bytes()[1:])
    assert runner.invoke(app, args).exit_code == 0
    assert _statuses(wd)["vicuna"] == "ran" and _statuses(wd)["convert"].startswith("ran")


def test_publish_stage_puts_the_run_record_in_the_model_card(
    tmp_path, own_meta, hub_stand_in, monkeypatch
):
    monkeypatch.setenv("HF_TOKEN", "hf_runRecordTest")
    hub_stand_in({}, token="hf_runRecordTest")
    recipe, wd = str(_custom(tmp_path, own_meta)), tmp_path / "wd"
    res = runner.invoke(
        app, ["run", recipe, "--workdir", str(wd), "--set", "publish_to=hf://me/tiny", "-q"]
    )
    assert res.exit_code == 0, res.output
    from huggingface_hub import hf_hub_download

    card = Path(hf_hub_download("me/tiny", "README.md")).read_text()
    assert "How these weights were made" in card and "weightprep convert-llama" in card
    vicuna = json.loads((wd / "state.json").read_text())["stages"]["vicuna"]["outputs"]
    assert vicuna["SHA256SUMS"] in card


def test_only_and_from(tmp_path, own_meta):
    recipe, wd = str(_custom(tmp_path, own_meta)), str(tmp_path / "wd")
    # --only the first stage of a fresh work dir: allowed (nothing it reads is missing)
    assert (
        runner.invoke(app, ["run", recipe, "--workdir", wd, "--only", "convert", "-q"]).exit_code
        == 0
    )
    assert _statuses(Path(wd))["convert"] == "ran"
    # --only a stage whose inputs never ran: refused, naming the stage
    res = runner.invoke(
        app, ["run", recipe, "--workdir", str(tmp_path / "wd2"), "--only", "vicuna"]
    )
    assert res.exit_code == 2 and "stage convert has never run" in res.stderr
    assert runner.invoke(app, ["run", recipe, "--workdir", wd, "-q"]).exit_code == 0
    res = runner.invoke(
        app, ["run", recipe, "--workdir", wd, "--redo", "vicuna", "--from", "vicuna", "-q"]
    )
    assert res.exit_code == 0 and _statuses(Path(wd))["vicuna"] == "ran"


def test_fetched_input_is_removed_after_use_when_asked(
    tmp_path, meta_root, converted, hub_stand_in
):
    from weightprep.example import make_delta_example

    delta = make_delta_example(converted("7B", "float16"), tmp_path / "delta")
    hub_stand_in({"me/delta": delta})
    doc = {
        "version": 1,
        "name": "remote-input",
        "settings": {"keep_intermediate": False},
        "inputs": {"llama": str(meta_root), "delta": "hf://me/delta"},
        "stages": [
            {
                "id": "convert",
                "run": "convert-llama",
                "with": {"input": "${inputs.llama}", "model_size": "7B"},
            },
            {
                "id": "vicuna",
                "run": "apply-delta",
                "with": {"base": "${convert}", "delta": "${inputs.delta}"},
            },
        ],
    }
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(doc))
    wd = tmp_path / "wd"
    assert runner.invoke(app, ["run", str(recipe), "--workdir", str(wd), "-q"]).exit_code == 0
    assert not (wd / "input-delta").exists() and not (wd / "convert").exists()
    assert (wd / "vicuna" / "SHA256SUMS").exists()
    assert runner.invoke(app, ["run", str(recipe), "--workdir", str(wd), "-q"]).exit_code == 0
    assert _statuses(wd) == {"input-delta": "pruned", "convert": "pruned", "vicuna": "skipped"}
