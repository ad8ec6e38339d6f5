"""Manifest schema and formats: strict YAML, sha256sum/md5sum files, untrusted paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from weightprep.manifest import (
    FileEntry,
    Manifest,
    ManifestError,
    check_relpath,
    dump_sums,
    dump_yaml,
    parse_yaml,
    read_manifest,
    shipped,
)

H = "a" * 64


def test_yaml_round_trip(tmp_path: Path) -> None:
    from weightprep.manifest import TensorEntry

    m = Manifest(
        "x",
        {"a/b.bin": FileEntry(3, H), "c": FileEntry(None, None, "b" * 32)},
        "d",
        ("https://e",),
        {"t": TensorEntry("float16", (2, 3), H)},
    )
    p = tmp_path / "m.yaml"
    p.write_text(dump_yaml(m))
    assert read_manifest(p) == m


@pytest.mark.parametrize(
    "text,match",
    [
        ("version: 1\nname: x\nfiles: {}\nextra: 1\n", "unknown key"),
        ("version: 2\nname: x\nfiles: {}\n", "version 2"),
        ("name: x\nfiles: {}\n", "missing key"),
        (f"version: 1\nname: x\nfiles: {{a: {{size: big, sha256: {H}}}}}\n", "size must be"),
        ("version: 1\nname: x\nfiles: {a: {sha256: zz}}\n", "64 hex"),
        ("version: 1\nname: x\nfiles: {a: {size: 1}}\n", "needs sha256"),
        (f"version: 1\nname: x\nfiles: {{a: {{sha256: {H}, sha1: x}}}}\n", "unknown key"),
        (f"version: 1\nname: x\nfiles: {{../up: {{sha256: {H}}}}}\n", "leaves the folder"),
        (f"version: 1\nname: x\nfiles: {{/etc/passwd: {{sha256: {H}}}}}\n", "absolute path"),
        ("version: 1\nname: x\nfiles: [1, 2]\n", "files must map"),
        (
            "version: 1\nname: x\nfiles: {}\ntensors: {t: {dtype: f16, shape: [-1], sha256: x}}\n",
            "shape",
        ),
        ("- just\n- a list\n", "expected a mapping"),
        ("version: 1\nname: [\n", "not valid YAML"),
    ],
)
def test_bad_yaml_refused(text: str, match: str) -> None:
    with pytest.raises(ManifestError, match=match):
        parse_yaml(text, "m.yaml")


@pytest.mark.parametrize("bad", ["../a", "a/../../b", "/abs", "C:/x", "a\\b", "a\x00b", "", "a//b"])
def test_untrusted_paths(bad: str) -> None:
    with pytest.raises(ManifestError):
        check_relpath(bad, "m")


def test_sums_formats_detected(tmp_path: Path) -> None:
    p = tmp_path / "SHA256SUMS"
    p.write_text(f"{H}  a.bin\n{H} *dir/b.bin\n")
    m = read_manifest(p)
    assert m.format == "sha256sum" and m.files["dir/b.bin"].sha256 == H
    c = tmp_path / "checklist.chk"
    c.write_text("0" * 32 + "  consolidated.00.pth\n")
    assert read_manifest(c).format == "md5sum"
    assert dump_sums(m) == f"{H}  a.bin\n{H}  dir/b.bin\n"


def test_hostile_files_refused(tmp_path: Path) -> None:
    huge = tmp_path / "huge.yaml"
    with open(huge, "wb") as f:
        f.truncate(65 * 2**20)
    with pytest.raises(ManifestError, match="too large"):
        read_manifest(huge)
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"version: 1\nname: \xff\xfe\n")
    with pytest.raises(ManifestError, match="UTF-8"):
        read_manifest(binary)
    mixed = tmp_path / "SUMS"
    mixed.write_text(f"{H}  a\n{'b' * 32}  c\n")
    with pytest.raises(ManifestError, match="unexpected length"):
        read_manifest(mixed)
    trav = tmp_path / "T"
    trav.write_text(f"{H}  ../../etc/passwd\n")
    with pytest.raises(ManifestError, match="leaves the folder"):
        read_manifest(trav)


def test_shipped_manifests_each_hash_has_a_source() -> None:
    from importlib.resources import files

    ms = shipped()
    assert set(ms) == {"llama-7b", "llama-13b", "llama-30b", "llama-65b"}
    assert ms["llama-7b"].files["7B/consolidated.00.pth"].size == 13_476_939_516
    assert ms["llama-7b"].files["7B/params.json"].md5 == "7596560e011154b90eb51a1b15739763"
    assert len(ms["llama-65b"].files) == 8 + 1 + 1
    for entry in files("weightprep.manifests").iterdir():
        if not entry.name.endswith(".yaml"):
            continue
        lines = entry.read_text().splitlines()
        for i, line in enumerate(lines):
            if "sha256:" in line and not line.strip().startswith("#"):
                assert lines[i - 1].strip().startswith("# https://"), f"{entry.name}: {line}"
            if "md5:" in line and not line.strip().startswith("#"):
                assert "md5: Meta's checklist.chk" in lines[i - 1], f"{entry.name}: {line}"


@pytest.mark.parametrize("size", ["7B", "13B", "30B", "65B"])
def test_shipped_params_hash_matches_metas_real_params_json(size: str) -> None:
    """Meta's params.json is one known 101-byte line: the shipped hashes must be of exactly that."""
    import hashlib

    from tests.test_params import REAL

    raw = REAL[size][0].encode()
    assert len(raw) == 101
    entry = shipped()[f"llama-{size.lower()}"].files[f"{size}/params.json"]
    assert entry.size == 101 and entry.sha256 == hashlib.sha256(raw).hexdigest()
    if entry.md5:
        assert entry.md5 == hashlib.md5(raw).hexdigest()


def test_manifests_lists_whole_first_sentences():
    from typer.testing import CliRunner

    from weightprep.cli.app import app
    from weightprep.manifest import shipped

    res = CliRunner().invoke(app, ["manifests"])
    assert res.exit_code == 0
    lines = res.stdout.splitlines()
    assert len(lines) == len(shipped())
    for line in lines:
        assert line.endswith("checks the folder as downloaded."), line  # not cut mid-sentence
