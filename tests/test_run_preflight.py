"""run RECIPE: everything cheap checked before anything heavy, by --plan and by the run, with
nothing written; a plan that reads no weights; --json on failure and for the plan."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from weightprep.cli.app import app
from weightprep.recipe import engine, preflight
from weightprep.recipe.schema import resolve

runner = CliRunner()
HF_TOKEN = "hf_preflightTestToken0123456789abcdef"
DRIVE_TOKEN = "ya29.weightprep-preflight-token-0123456789"


def _recipe(tmp_path: Path, llama: Path, lavis: bool = False) -> Path:
    """convert -> delta -> vicuna -> (lavis) -> copy (publish, when publish_to is set)."""
    stages = [
        {
            "id": "convert",
            "run": "convert-llama",
            "with": {
                "input": "${inputs.llama}",
                "model_size": "7B",
                "verify_input": "${settings.llama_manifest}",
            },
        },
        {"id": "delta", "run": "make-example-delta", "with": {"base": "${convert}"}},
        {
            "id": "vicuna",
            "run": "apply-delta",
            "with": {"base": "${convert}", "delta": "${delta}"},
        },
    ]
    inputs = {"llama": str(llama)}
    if lavis:
        inputs["lavis"] = str(tmp_path / "LAVIS")
        stages.append(
            {
                "id": "lavis",
                "run": "patch-lavis-config",
                "with": {"llm": "${vicuna}", "lavis": "${inputs.lavis}"},
            }
        )
    stages.append(
        {
            "id": "copy",
            "run": "publish",
            "when": "${settings.publish_to}",
            "with": {"model": "${vicuna}", "to": "${settings.publish_to}"},
        }
    )
    doc = {
        "version": 1,
        "name": "preflight",
        "settings": {"publish_to": "", "llama_manifest": ""},
        "inputs": inputs,
        "stages": stages,
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _refused(args: list[str], wd: Path, code: int, message: str) -> None:
    """Refused by --plan and by the run, before the first stage: the exit code, the message,
    one line, and nothing written (the work dir is not even made)."""
    for extra in (["--plan"], []):
        res = runner.invoke(app, [*args, "--workdir", str(wd), *extra])
        assert res.exit_code == code, (extra, res.output)
        assert message in res.stderr, (extra, res.stderr)
        assert res.stderr.count("\n") == 1, res.stderr
        assert "started" not in res.stderr
        assert not wd.exists(), extra


@pytest.fixture
def hub(hub_stand_in):
    return hub_stand_in({}, token=HF_TOKEN)


def test_publish_to_the_hub_without_a_token_is_refused_before_any_stage(tmp_path, meta_root, hub):
    recipe = _recipe(tmp_path, meta_root)
    args = ["run", str(recipe), "--set", "publish_to=hf://me/x"]
    _refused(args, tmp_path / "wd", 2, "no Hugging Face token")


def test_publish_to_the_hub_with_a_bad_token_is_refused(tmp_path, meta_root, hub, monkeypatch):
    recipe = _recipe(tmp_path, meta_root)
    args = ["run", str(recipe), "--set", "publish_to=hf://me/x"]
    monkeypatch.setenv("HF_TOKEN", "hf_notTheRightToken")
    _refused(args, tmp_path / "wd", 2, "rejected the token")
    # the right token passes the same check, and the plan says whose it is
    monkeypatch.setenv("HF_TOKEN", HF_TOKEN)
    res = runner.invoke(app, [*args, "--workdir", str(tmp_path / "wd"), "--plan"])
    assert res.exit_code == 0, res.output
    assert "OK   copy: publish to hf://me/x: the Hub accepts the token" in res.stdout


def test_publish_to_drive_with_a_bad_token_is_refused(
    tmp_path, meta_root, drive_stand_in, monkeypatch
):
    drive_stand_in(DRIVE_TOKEN)
    recipe = _recipe(tmp_path, meta_root)
    args = ["run", str(recipe), "--set", "publish_to=gdrive://root/x"]
    monkeypatch.setenv("GOOGLE_OAUTH_ACCESS_TOKEN", "ya29.wrong")
    _refused(args, tmp_path / "wd", 2, "Drive refused (401)")
    monkeypatch.delenv("GOOGLE_OAUTH_ACCESS_TOKEN")
    _refused(args, tmp_path / "wd", 2, "no Google credentials")
    monkeypatch.setenv("GOOGLE_OAUTH_ACCESS_TOKEN", DRIVE_TOKEN)
    res = runner.invoke(app, [*args, "--workdir", str(tmp_path / "wd"), "--plan"])
    assert res.exit_code == 0, res.output
    assert "Drive accepts the credentials of user@example.com" in res.stdout


def test_publish_to_a_folder_needs_a_writable_parent(tmp_path, meta_root):
    recipe = _recipe(tmp_path, meta_root)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    args = ["run", str(recipe), "--set", f"publish_to={blocker}/copy"]
    _refused(args, tmp_path / "wd", 2, f"{blocker}: not a writable folder")


def test_missing_input_folder_is_refused_naming_it(tmp_path, meta_root):
    recipe = _recipe(tmp_path, meta_root)
    args = ["run", str(recipe), "--set", f"inputs.llama={tmp_path}/nope"]
    _refused(
        args,
        tmp_path / "wd",
        2,
        f"{tmp_path}/nope: input llama does not exist (set it with --set inputs.llama=PATH)",
    )


def test_missing_lavis_is_refused(tmp_path, meta_root):
    recipe = _recipe(tmp_path, meta_root, lavis=True)
    args = ["run", str(recipe)]
    _refused(args, tmp_path / "wd", 2, "input lavis does not exist")
    # a LAVIS checkout without the config: not found, naming where it looked
    (tmp_path / "LAVIS" / "lavis").mkdir(parents=True)
    _refused(args, tmp_path / "wd", 2, "blip2_instruct_vicuna7b.yaml not found (looked in:")
    # with the config it passes, and the plan says where the backup will go
    from tests.test_lavis import write_config

    config = write_config(tmp_path / "LAVIS" / "lavis")
    res = runner.invoke(app, [*args, "--workdir", str(tmp_path / "wd"), "--plan"])
    assert res.exit_code == 0, res.output
    assert f"{config} found and writable; a backup goes to {config}.weightprep-backup" in res.stdout


def test_a_missing_manifest_is_refused(tmp_path, meta_root):
    recipe = _recipe(tmp_path, meta_root)
    args = ["run", str(recipe), "--set", "llama_manifest=llama-7c"]
    _refused(args, tmp_path / "wd", 2, "llama-7c: no such file, and not a shipped manifest")


def test_a_disk_too_small_is_refused_with_exit_3(tmp_path, meta_root, monkeypatch):
    recipe = _recipe(tmp_path, meta_root)
    monkeypatch.setattr(preflight, "free_bytes", lambda p: 1000)
    _refused(["run", str(recipe)], tmp_path / "wd", 3, "disk has 1000 B free")


def test_several_problems_are_named_together(tmp_path, meta_root, hub, monkeypatch):
    recipe = _recipe(tmp_path, meta_root, lavis=True)
    monkeypatch.setattr(preflight, "free_bytes", lambda p: 1000)
    args = ["run", str(recipe), "--set", "publish_to=hf://me/x"]
    res = runner.invoke(app, [*args, "--workdir", str(tmp_path / "wd"), "--plan"])
    assert res.exit_code == 2  # bad input outranks the machine
    for words in ("3 problems", "input lavis does not exist", "no Hugging Face token", "disk"):
        assert words in res.stderr
    assert "FAIL copy: publish to hf://me/x" in res.stdout  # and the plan lists each check


def test_plan_reads_no_weights_and_the_run_hashes_them_once(tmp_path, meta_root):
    r = resolve(str(_recipe(tmp_path, meta_root)))
    wd = tmp_path / "wd"
    first = engine.Runner(r, wd)
    plan = first.plan()
    assert first.graph.wd.bytes_hashed == 0  # a cold cache: nothing read, nothing known
    assert {p.action for p in plan} == {"run", "off"}
    first.run(plan)
    shard = meta_root / "7B" / "consolidated.00.pth"
    assert first.graph.wd.bytes_hashed >= shard.stat().st_size  # the counter counts
    again = engine.Runner(r, wd)
    plan = again.plan()
    assert {p.action for p in plan} == {"skip", "off"}
    assert again.graph.wd.bytes_hashed == 0 and again.graph.wd.files_hashed == 0


def _io(cmd: list[str], env: dict | None = None) -> dict[str, int]:
    """Run weightprep in a child and return its /proc/self/io counters at exit."""
    code = (
        "import atexit, sys\n"
        "atexit.register(lambda: sys.stderr.write('IO ' + open('/proc/self/io').read()"
        ".replace(chr(10), ' ') + chr(10)))\n"
        "from weightprep.cli.app import main\n"
        "main(sys.argv[1:])\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code, *cmd], capture_output=True, text=True, env=env
    )
    assert res.returncode == 0, res.stderr
    line = next(ln for ln in res.stderr.splitlines() if ln.startswith("IO "))
    words = line.split()[1:]
    return {words[i].rstrip(":"): int(words[i + 1]) for i in range(0, len(words), 2)}


@pytest.mark.skipif(not Path("/proc/self/io").exists(), reason="needs Linux's /proc/self/io")
def test_plan_on_a_finished_workdir_reads_no_input_bytes_by_proc_io(tmp_path):
    """Measured from outside the digest cache: the kernel's count of bytes read. A 256 MiB
    input (sparse: no disk used) dwarfs what Python reads importing torch and transformers."""
    data = tmp_path / "data"
    data.mkdir()
    big = data / "weights.bin"
    with open(big, "wb") as f:
        f.truncate(256 * 2**20)
    digest = hashlib.sha256(b"\0" * (256 * 2**20)).hexdigest()
    (tmp_path / "SUMS").write_text(f"{digest}  weights.bin\n")
    doc = {
        "version": 1,
        "name": "big",
        "inputs": {"data": str(data)},
        "stages": [
            {
                "id": "check",
                "run": "verify",
                "with": {"folder": "${inputs.data}", "manifest": str(tmp_path / "SUMS")},
            }
        ],
    }
    recipe = tmp_path / "big.yaml"
    recipe.write_text(yaml.safe_dump(doc))
    args = ["run", str(recipe), "--workdir", str(tmp_path / "wd"), "-q"]
    cold_plan = _io([*args, "--plan"])
    run = _io(args)
    plan = _io([*args, "--plan"])
    size = big.stat().st_size
    assert run["rchar"] > size  # the run reads it (hashing it for the key, then verifying)
    assert cold_plan["rchar"] < size and plan["rchar"] < size
    assert plan["wchar"] == 0  # and writes nothing, not even state.json


def test_stage_lines_arrive_as_stages_start_under_a_pipe(tmp_path, meta_root):
    """Each start line is read from the pipe before that stage's output exists (the child is
    stopped while the folder is looked at); each end line after it exists."""
    import signal

    recipe = _recipe(tmp_path, meta_root)
    wd = tmp_path / "wd"
    proc = subprocess.Popen(
        [sys.executable, "-m", "weightprep", "run", str(recipe), "--workdir", str(wd)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    )
    seen_start, seen_end = [], []
    assert proc.stdout is not None
    for line in proc.stdout:
        if "): started " in line or "): done in " in line:
            proc.send_signal(signal.SIGSTOP)
            sid = line.split("] ", 1)[1].split(" ", 1)[0]
            exists = (wd / sid).exists()
            proc.send_signal(signal.SIGCONT)
            if "started" in line:
                assert not exists, line
                seen_start.append(sid)
            else:
                assert exists, line
                seen_end.append(sid)
    assert proc.wait() == 0
    assert seen_start == seen_end == ["convert", "delta", "vicuna"]


def test_json_on_a_failing_run_names_the_failed_stage(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "w.bin").write_bytes(b"weights")
    (tmp_path / "SUMS").write_text(f"{'0' * 64}  w.bin\n")
    doc = {
        "version": 1,
        "name": "bad",
        "inputs": {"data": str(data)},
        "stages": [
            {
                "id": "copy",
                "run": "publish",
                "with": {"model": "${inputs.data}", "to": str(tmp_path / "out")},
            },
            {
                "id": "check",
                "run": "verify",
                "with": {"folder": "${inputs.data}", "manifest": str(tmp_path / "SUMS")},
            },
        ],
    }
    recipe = tmp_path / "bad.yaml"
    recipe.write_text(yaml.safe_dump(doc))
    wd = tmp_path / "wd"
    res = runner.invoke(app, ["run", str(recipe), "--workdir", str(wd), "--json"])
    assert res.exit_code == 1
    got = json.loads(res.stdout)
    assert got["ok"] is False and got["failed_stage"] == "check"
    assert "w.bin (mismatch)" in got["error"]
    assert [s["status"] for s in got["stages"]] == ["ran", "failed"]
    assert got == json.loads((wd / "run.json").read_text())
    md = (wd / "RUN.md").read_text()
    assert "FAILED at stage check" in md and "w.bin (mismatch)" in md
    # the publish stage's verification is in the record, in words
    assert "at " + str(tmp_path / "out") + " checked against the local sha256s" in md


def test_plan_json_and_preflight_json(tmp_path, meta_root):
    recipe = _recipe(tmp_path, meta_root)
    wd = tmp_path / "wd"
    res = runner.invoke(app, ["run", str(recipe), "--workdir", str(wd), "--plan", "--json"])
    assert res.exit_code == 0, res.output
    got = json.loads(res.stdout)
    assert [p["id"] for p in got["plan"]] == ["convert", "delta", "vicuna", "copy"]
    assert [p["action"] for p in got["plan"]] == ["run", "run", "run", "off"]
    assert got["totals"]["to_run"] == 3 and any(c["what"] == "disk" for c in got["preflight"])
    res = runner.invoke(
        app,
        ["run", str(recipe), "--workdir", str(wd), "--json", "--set", "inputs.llama=/nope"],
    )
    assert res.exit_code == 2
    got = json.loads(res.stdout)
    assert got["ok"] is False and "input llama does not exist" in got["error"]
    assert not wd.exists()


def test_empty_llama_manifest_skips_the_check_and_the_record_says_so(tmp_path, meta_root):
    """The seed recipes' one pass: Meta's download and a delta, verify_input from a setting."""
    doc = {
        "version": 1,
        "name": "one-pass",
        "settings": {"llama_manifest": "llama-7b"},
        "inputs": {"llama": str(meta_root)},
        "stages": [
            {
                "id": "delta",
                "run": "make-example-delta",
                "with": {"base": "${inputs.llama}", "model_size": "7B", "steps": 2},
            },
            {
                "id": "vicuna",
                "run": "apply-delta",
                "with": {
                    "base": "${inputs.llama}",
                    "model_size": "7B",
                    "delta": "${delta}",
                    "verify_input": "${settings.llama_manifest}",
                },
            },
        ],
    }
    recipe = tmp_path / "one-pass.yaml"
    recipe.write_text(yaml.safe_dump(doc, sort_keys=False))
    wd = tmp_path / "wd"
    args = ["run", str(recipe), "--workdir", str(wd)]
    res = runner.invoke(app, [*args, "--set", "llama_manifest=", "--plan"])
    assert res.exit_code == 0, res.output
    assert "--verify-input" not in res.stdout
    res = runner.invoke(app, [*args, "--set", "llama_manifest="])
    assert res.exit_code == 0, res.output
    md = (wd / "RUN.md").read_text()
    assert "verify_input: skipped (${settings.llama_manifest} is empty" in md
    assert "- input: consolidated.00.pth: md5 OK" in md  # Meta's checklist, still checked
    assert "- input: not checked against a published manifest" in md
    # set to a manifest, it is checked in the same read, and the record says against what
    from weightprep.checksum import hash_tree
    from weightprep.manifest import Manifest, dump_yaml

    manifest = tmp_path / "tiny-llama.yaml"
    manifest.write_text(dump_yaml(Manifest("tiny-llama", hash_tree(meta_root))))
    res = runner.invoke(app, [*args, "--set", f"llama_manifest={manifest}"])
    assert res.exit_code == 0, res.output
    md = (wd / "RUN.md").read_text()
    assert "(manifest tiny-llama)" in md and "verify_input: skipped" not in md


def test_memory_too_small_is_exit_3(tmp_path, meta_root, monkeypatch):
    recipe = _recipe(tmp_path, meta_root)
    monkeypatch.setattr(preflight, "memory_bytes", lambda: 10**6)
    _refused(["run", str(recipe)], tmp_path / "wd", 3, "of memory, and this machine has")


def test_a_malformed_remote_input_is_refused(tmp_path):
    doc = {
        "version": 1,
        "name": "remote",
        "inputs": {"delta": "hf://me/delta"},
        "stages": [
            {
                "id": "check",
                "run": "verify",
                "with": {"folder": "${inputs.delta}", "manifest": "llama-7b"},
            }
        ],
    }
    recipe = tmp_path / "remote.yaml"
    recipe.write_text(yaml.safe_dump(doc))
    args = ["run", str(recipe), "--set", "inputs.delta=hf://just-a-name"]
    _refused(args, tmp_path / "wd", 2, "hf://just-a-name: expected hf://NAMESPACE/NAME")
