import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from weightprep import __version__
from weightprep.cli.app import app, main
from weightprep.cli.common import parse_dtype, parse_size


def test_parse_size() -> None:
    assert parse_size("5GB") == 5 * 10**9
    assert parse_size("512MiB") == 512 * 2**20
    assert parse_size("1000") == 1000


def test_json_report(meta_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "o"
    res = CliRunner().invoke(
        app, ["convert-llama", str(meta_root), str(out), "--model-size", "13B", "--json"]
    )
    assert res.exit_code == 0, res.output
    rep = json.loads(res.stdout)
    assert rep["num_shards"] == 2 and rep["dtype"] == "float16" and rep["llama_version"] == 1
    assert set(rep["files"]) == {x.name for x in out.iterdir()} - {"SHA256SUMS"}


def test_quiet_prints_nothing(meta_root: Path, tmp_path: Path) -> None:
    res = CliRunner().invoke(
        app, ["convert-llama", str(meta_root / "7B"), str(tmp_path / "o"), "-q"]
    )
    assert res.exit_code == 0 and res.output == ""


def test_bad_max_shard_size(meta_root: Path, tmp_path: Path) -> None:
    res = CliRunner().invoke(
        app, ["convert-llama", str(meta_root), str(tmp_path / "o"), "--max-shard-size", "lots"]
    )
    assert res.exit_code == 2 and "5GB" in res.output


def test_help_is_light_and_has_examples() -> None:
    # `weightprep --help` must not import torch/transformers.
    code = "import sys; from weightprep.cli.app import app; print('torch' in sys.modules, 'transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
    res = CliRunner().invoke(app, ["convert-llama", "--help"])
    assert res.exit_code == 0 and "weightprep convert-llama ~/LLaMA" in res.output


def test_make_example_refuses_non_empty(tmp_path: Path) -> None:
    (tmp_path / "x").write_text("1")
    res = CliRunner().invoke(app, ["make-example", str(tmp_path)])
    assert res.exit_code == 2 and "not empty" in res.output


def test_corrupt_input_exits_1_with_one_line(meta_root: Path, tmp_path: Path) -> None:
    import shutil

    root = tmp_path / "LLaMA"
    shutil.copytree(meta_root / "7B", root / "7B")
    shutil.copy(meta_root / "tokenizer.model", root)
    (root / "7B" / "checklist.chk").write_text(
        "0" * 32
        + "  consolidated.00.pth\n"
        + (root / "7B" / "checklist.chk").read_text().splitlines()[-1]
        + "\n"
    )
    res = CliRunner().invoke(app, ["convert-llama", str(root), str(tmp_path / "o")])
    assert res.exit_code == 1
    assert res.output.count("\n") == 1 and "consolidated.00.pth: md5" in res.output
    res = CliRunner().invoke(
        app, ["convert-llama", str(root), str(tmp_path / "o"), "--no-checklists", "--json"]
    )
    assert res.exit_code == 0 and json.loads(res.stdout)["input_checks"] == []


def test_every_command_has_working_help() -> None:
    """Every command's --help renders (help texts hold literal [BRACKETS], not markup)."""
    runner = CliRunner()
    names = [c.name for c in app.registered_commands] + [g.name for g in app.registered_groups]
    assert {"publish", "fetch", "run", "smoke-test", "recipes"} <= set(names)
    for name in names:
        res = runner.invoke(app, [name, "--help"])
        assert res.exit_code == 0, (name, res.output)


def _commands(group=None, path=()):
    """(path, command) for every command and subcommand the real entry point dispatches to."""
    group = group or typer.main.get_command(app)
    for name, cmd in sorted(group.commands.items()):
        yield (*path, name), cmd
        if hasattr(cmd, "commands"):
            yield from _commands(cmd, (*path, name))


def _main(argv: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit:
        main(argv)
    out, err = capsys.readouterr()
    return exit.value.code, out, err


@pytest.mark.parametrize("path", [p for p, _ in _commands()], ids=" ".join)
def test_a_misspelled_option_is_one_line_and_exit_2(path, capsys) -> None:
    code, out, err = _main([*path, "--quitet"], capsys)
    assert code == 2 and out == ""
    assert err.splitlines() == [
        f"error: no such option: --quitet{_maybe_hint(err)} (see: weightprep {' '.join(path)} --help)"
    ]


def _maybe_hint(err: str) -> str:
    """Click adds its close matches, if any: `(Possible options: --quiet)`."""
    m = re.search(r" \(Possible options: [^)]*\)", err)
    return m.group(0) if m else ""


@pytest.mark.parametrize(
    "path",
    [p for p, c in _commands() if any(q.required for q in c.params)],
    ids=" ".join,
)
def test_a_missing_argument_is_one_line_and_exit_2(path, capsys) -> None:
    code, out, err = _main(list(path), capsys)
    assert code == 2 and out == ""
    (line,) = err.splitlines()
    assert re.fullmatch(
        rf"error: missing (argument|option) '[^']+' \(see: weightprep {' '.join(path)} --help\)",
        line,
    ), line


def test_usage_errors_through_the_installed_command() -> None:
    """`python -m weightprep` runs the same main(): one line, exit 2; help and version as usual."""

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "weightprep", *args], capture_output=True, text=True
        )

    typo = run("hash", "somewhere", "--outptu", "x.yaml")
    assert typo.returncode == 2 and typo.stdout == ""
    assert typo.stderr == (
        "error: no such option: --outptu (Possible options: --output) "
        "(see: weightprep hash --help)\n"
    )
    extra = run("manifests", "surplus")
    assert extra.returncode == 2 and len(extra.stderr.splitlines()) == 1
    assert extra.stderr.startswith("error: got unexpected extra argument")
    unknown = run("hahs")
    assert unknown.returncode == 2
    assert unknown.stderr == (
        "error: no such command 'hahs'. Did you mean 'hash'? (see: weightprep --help)\n"
    )
    for flag in ("-h", "--help"):
        for args in ((flag,), ("hash", flag), ("recipes", "show", flag)):
            res = run(*args)
            assert res.returncode == 0 and res.stdout.startswith("Usage: weightprep"), args
    version = run("--version")
    assert version.returncode == 0 and version.stdout.strip() == __version__
    bare = run()  # no_args_is_help: the help, as before
    assert bare.returncode == 2 and "Commands" in bare.stderr and "error:" not in bare.stderr


@pytest.mark.parametrize(
    "given,meant", [("fp16", "float16"), ("BF16", "bfloat16"), ("fp32", "float32")]
)
def test_dtype_short_names(given, meant, meta_root: Path, tmp_path: Path) -> None:
    res = CliRunner().invoke(
        app,
        ["convert-llama", str(meta_root / "7B"), str(tmp_path / "o"), "--dtype", given, "--json"],
    )
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["dtype"] == meant


def test_dtype_parsing() -> None:
    assert parse_dtype("bf16") == "bfloat16" and parse_dtype("float32") == "float32"
    assert parse_dtype("auto", auto=True) == "auto"
    for bad, auto in (("auto", False), ("fp8", True), ("half", False)):
        with pytest.raises(typer.BadParameter, match="fp16, bf16, fp32"):
            parse_dtype(bad, auto=auto)


def test_help_uses_one_plain_metavar_style() -> None:
    """Arguments are NAMES in capitals, options take TEXT, PATH, N or NUMBER (or show their
    choices): no `<list[str]>`, and no `{input}` beside `{SOURCE}`."""
    import re

    runner = CliRunner()
    for path, _ in _commands():
        out = runner.invoke(app, [*path, "--help"]).output
        assert "<list[" not in out, (path, out)
        options = [line for line in out.splitlines() if line.lstrip().startswith("-")]
        for line in options:  # Typer's own `<str>`, `<int>`, `<path>` names are not shown
            assert not re.search(r"<(str|int|float|path)>", line), (path, line)
        usage = out.splitlines()[0]
        assert all(a.isupper() for a in re.findall(r"\{([^}]*)\}", usage)), (path, usage)
