"""patch-lavis-config: one line changed, read back by PyYAML and OmegaConf, safely reversible."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from weightprep.cli.app import app
from weightprep.lavis import BACKUP_SUFFIX

# Same shape as LAVIS's blip2_instruct_vicuna7b.yaml (written here, not copied): a header of
# comments that start with a space, blank lines, quoted strings, nested sections.
CONFIG = """ # Copyright (c) 2023, example
 # All rights reserved.
 # A header whose lines start with a space, as LAVIS's do.

model:
  arch: instruct_{size}
  load_finetuned: False
  load_pretrained: True

  pretrained: "https://example.invalid/instruct_blip_{size}_trimmed.pth"
  finetuned: ""

  # vit encoder
  image_size: 224
  vit_precision: "fp16"

  # path to Vicuna checkpoint
  llm_model: "./llm/{size2}"

  # generation configs
  prompt: ""


preprocess:
    vis_processor:
        eval:
          name: "blip_image_eval"
          image_size: 224
"""

FLAN = """model:
  arch: flant5xl
  t5_model: "google/flan-t5-xl"
"""


def write_config(folder: Path, size: str = "vicuna7b") -> Path:
    p = folder / "configs" / "models" / "blip2" / f"blip2_instruct_{size}.yaml"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(CONFIG.format(size=size, size2=size.replace("vicuna", "vicuna-")))
    return p


@pytest.fixture
def lavis_pkg(tmp_path: Path, monkeypatch) -> Path:
    """A fake installed `lavis` package on sys.path whose import would fail loudly."""
    site = tmp_path / "site"
    pkg = site / "lavis"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise RuntimeError('LAVIS must not be imported')\n")
    write_config(pkg)
    write_config(pkg, "vicuna13b")
    monkeypatch.syspath_prepend(str(site))
    sys.modules.pop("lavis", None)
    return pkg


@pytest.fixture
def model(converted) -> Path:
    return converted("7B")


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_patches_installed_package_one_line(lavis_pkg: Path, model: Path) -> None:
    cfg = lavis_pkg / "configs/models/blip2/blip2_instruct_vicuna7b.yaml"
    before = cfg.read_text()
    res = invoke("patch-lavis-config", model)
    assert res.exit_code == 0, res.output
    after = cfg.read_text()
    diff = [(a, b) for a, b in zip(before.splitlines(), after.splitlines(), strict=True) if a != b]
    assert len(diff) == 1 and diff[0][0].strip() == 'llm_model: "./llm/vicuna-7b"'
    assert diff[0][1] == f"  llm_model: {json.dumps(str(model.absolute()))}"
    assert yaml.safe_load(after)["model"]["llm_model"] == str(model.absolute())
    from omegaconf import OmegaConf

    assert OmegaConf.load(cfg).model.llm_model == str(model.absolute())
    assert (cfg.parent / (cfg.name + BACKUP_SUFFIX)).read_text() == before
    assert "lavis" not in sys.modules  # found by spec, never imported


def test_idempotent_dry_run_and_restore(lavis_pkg: Path, model: Path) -> None:
    cfg = lavis_pkg / "configs/models/blip2/blip2_instruct_vicuna13b.yaml"
    original = cfg.read_bytes()
    os.chmod(cfg, 0o640)
    res = invoke("patch-lavis-config", model, "--model-type", "vicuna13b", "--dry-run")
    assert res.exit_code == 0 and "+  llm_model:" in res.output and cfg.read_bytes() == original
    assert invoke("patch-lavis-config", model, "--model-type", "vicuna13b").exit_code == 0
    patched = cfg.read_bytes()
    assert stat.S_IMODE(cfg.stat().st_mode) == 0o640
    res = invoke("patch-lavis-config", model, "--model-type", "vicuna13b")
    assert res.exit_code == 0 and "already set" in res.output and cfg.read_bytes() == patched
    res = invoke("patch-lavis-config", "--restore", "--model-type", "vicuna13b")
    assert res.exit_code == 0 and cfg.read_bytes() == original
    assert stat.S_IMODE(cfg.stat().st_mode) == 0o640


@pytest.mark.parametrize(
    "name",
    [
        "with space",
        "quote'single",
        'quote"double',
        "ünïcødé 日本",
        "colon: hash #x",
        "back\\slash",
        "- dash",
        "{brace}",
    ],
)
def test_odd_paths_round_trip(name: str, tmp_path: Path, model: Path) -> None:
    import shutil

    odd = tmp_path / name
    shutil.copytree(model, odd)
    src = tmp_path / "LAVIS"
    cfg = write_config(src / "lavis")
    res = invoke("patch-lavis-config", odd, "--lavis", src)
    assert res.exit_code == 0, res.output
    assert yaml.safe_load(cfg.read_text())["model"]["llm_model"] == str(odd.absolute())
    from omegaconf import OmegaConf

    assert OmegaConf.load(cfg).model.llm_model == str(odd.absolute())


def test_lavis_as_yaml_file_and_package_folder(tmp_path: Path, model: Path) -> None:
    cfg = write_config(tmp_path / "pkg")
    assert invoke("patch-lavis-config", model, "--lavis", cfg, "--no-check").exit_code == 0
    cfg2 = write_config(tmp_path / "pkg2")
    assert invoke("patch-lavis-config", model, "--lavis", tmp_path / "pkg2").exit_code == 0
    assert yaml.safe_load(cfg2.read_text())["model"]["llm_model"] == str(model.absolute())


def test_not_found_lists_where_it_looked(tmp_path: Path, model: Path, monkeypatch) -> None:
    monkeypatch.setattr("weightprep.lavis.installed_lavis", lambda: None)
    res = invoke("patch-lavis-config", model)
    assert res.exit_code == 2 and "no importable `lavis`" in res.output and "--lavis" in res.output
    res = invoke("patch-lavis-config", model, "--lavis", tmp_path)
    assert res.exit_code == 2 and str(tmp_path / "lavis" / "configs") in res.output


def test_flan_t5_config_refused(tmp_path: Path, model: Path) -> None:
    cfg = tmp_path / "blip2_instruct_flant5xl.yaml"
    cfg.write_text(FLAN)
    res = invoke("patch-lavis-config", model, "--lavis", cfg)
    assert res.exit_code == 2 and "no model.llm_model" in res.output
    assert cfg.read_text() == FLAN


def test_unparsable_config(tmp_path: Path, model: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model: [unclosed\n")
    res = invoke("patch-lavis-config", model, "--lavis", cfg)
    assert res.exit_code == 2 and "not valid YAML" in res.output


@pytest.mark.parametrize(
    "damage,text",
    [
        ("no-config", "config.json: missing"),
        ("not-llama", "not a LLaMA model"),
        ("no-tokenizer", "tokenizer.model: missing"),
        ("missing-shard", "shard(s) missing"),
        ("truncated-shard", "truncated"),
        ("empty-map", "empty weight_map"),
        ("bad-sums", "does not match its manifest.yaml"),
    ],
)
def test_failed_checks_leave_the_file_untouched(
    damage: str, text: str, tmp_path: Path, model: Path
) -> None:
    import shutil

    m = tmp_path / "m"
    shutil.copytree(model, m)
    shard = next(m.glob("model-*.safetensors"))
    if damage == "no-config":
        (m / "config.json").unlink()
    elif damage == "not-llama":
        (m / "config.json").write_text(
            json.dumps({"model_type": "t5", "architectures": ["T5ForConditionalGeneration"]})
        )
    elif damage == "no-tokenizer":
        (m / "tokenizer.model").unlink()
    elif damage == "missing-shard":
        shard.unlink()
    elif damage == "truncated-shard":
        shard.write_bytes(shard.read_bytes()[:100])
    elif damage == "empty-map":
        (m / "model.safetensors.index.json").write_text(
            json.dumps({"metadata": {}, "weight_map": {}})
        )
    else:
        (m / "tokenizer.json").write_text("{}")
    cfg = write_config(tmp_path / "L")
    before = cfg.read_bytes()
    args = ["patch-lavis-config", m, "--lavis", cfg] + (
        ["--verify"] if damage == "bad-sums" else []
    )
    res = invoke(*args)
    assert res.exit_code == 1, res.output
    assert text in res.output
    assert cfg.read_bytes() == before and not (cfg.parent / (cfg.name + BACKUP_SUFFIX)).exists()


def test_verify_reports_what_was_checked(tmp_path: Path, model: Path) -> None:
    cfg = write_config(tmp_path / "L")
    res = invoke("patch-lavis-config", model, "--lavis", cfg, "--json")
    assert "not checked (pass --verify" in " ".join(json.loads(res.stdout)["checks"])
    cfg2 = write_config(tmp_path / "L2")
    res = invoke("patch-lavis-config", model, "--lavis", cfg2, "--verify", "--json")
    assert res.exit_code == 0 and "manifest.yaml: verified" in " ".join(
        json.loads(res.stdout)["checks"]
    )


def test_backup_in_a_git_checkout_says_how_to_keep_git_status_clean(converted, tmp_path):
    """The backup sits beside the config; in a LAVIS git checkout the output says how to hide
    it, and doing what it says leaves `git status` clean."""
    import shlex
    import subprocess

    from typer.testing import CliRunner

    from weightprep.cli.app import app

    lavis = tmp_path / "LAVIS"
    cfg = write_config(lavis / "lavis")

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(lavis), *args], capture_output=True, text=True, check=True
        ).stdout

    git("init", "-q")
    git("add", ".")
    git("-c", "user.email=t@example.invalid", "-c", "user.name=t", "commit", "-qm", "lavis")
    res = CliRunner().invoke(
        app, ["patch-lavis-config", str(converted("7B")), "--lavis", str(lavis)]
    )
    assert res.exit_code == 0, res.output
    note = next(line for line in res.stdout.splitlines() if line.startswith("note: "))
    assert "git status" in note and str(lavis) in note
    assert "?? lavis/configs/models/blip2/blip2_instruct_vicuna7b.yaml.weightprep-backup" in git(
        "status", "--porcelain"
    )
    command = note.split("to hide it: ", 1)[1]
    subprocess.run(command, shell=True, check=True)  # echo '*...' >> .git/info/exclude
    assert git("status", "--porcelain").split() == ["M", str(cfg.relative_to(lavis))]
    assert shlex.split(command)[0] == "echo"
    res = CliRunner().invoke(app, ["patch-lavis-config", "--restore", "--lavis", str(lavis)])
    assert res.exit_code == 0 and git("status", "--porcelain") == ""
