"""The command line explains itself: every flag's help states its default, --version, and errors are one
line that says what to do (the traceback only with --debug)."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from sat_triton import __version__
from sat_triton.builder.cli import _build_parser, main
from sat_triton.builder.errors import BuildError


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = _build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return {"sat-triton": parser, **{f"sat-triton {name}": p for name, p in sub.choices.items()}}


def test_every_flag_says_what_it_does_and_its_default():
    missing = []
    for command, parser in subcommands().items():
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)):
                continue
            name = action.option_strings[0] if action.option_strings else action.dest
            text = (action.help or "").lower()
            if not text:
                missing.append(f"{command} {name}: no help")
            elif action.option_strings and not action.required and "default" not in text:
                missing.append(f"{command} {name}: help does not state the default")
    assert not missing, "\n".join(missing)


def test_version():
    done = subprocess.run([sys.executable, "-m", "sat_triton.builder", "--version"], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == f"sat-triton {__version__}"


@pytest.mark.parametrize("case", ["missing checkpoint", "output_dir is a file", "output_dir cannot be made"])
def test_errors_are_one_line_and_debug_shows_the_traceback(tmp_path, capsys, case):
    checkpoint = tmp_path / "ckpt"
    checkpoint.mkdir()
    (checkpoint / "config.json").write_text('{"model_type": "xlm-token"}')
    (tmp_path / "a_file").write_text("")
    args = {
        "missing checkpoint": ["--model_name_or_path", str(tmp_path / "nope"), "--output_dir", str(tmp_path / "r")],
        "output_dir is a file": ["--model_name_or_path", str(checkpoint), "--output_dir", str(tmp_path / "a_file")],
        "output_dir cannot be made": ["--model_name_or_path", str(checkpoint),
                                      "--output_dir", str(tmp_path / "a_file" / "below")],
    }[case]
    assert main(["build", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("sat-triton build: error: --"), err
    assert "pass" in err[0]  # says what to do
    assert not (tmp_path / "r").exists()  # a failed build leaves no directory behind
    with pytest.raises(BuildError):
        main(["build", "--debug", *args])
    with pytest.raises(BuildError):
        main(["--debug", "build", *args])


def test_an_unforeseen_error_is_one_line_too(tmp_path, monkeypatch, capsys):
    import sat_triton.builder.cli as cli

    def broken(args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cli, "serve", broken)
    assert main(["serve", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["sat-triton serve: error: OSError: [Errno 28] No space left on device "
                   "(run again with --debug for the traceback)"]
    with pytest.raises(OSError):
        main(["serve", str(tmp_path), "--debug"])


def test_a_negative_recycle_limit_is_refused(tmp_path, capsys):
    assert main(["serve", str(tmp_path), "--recycle_shm_mb", "-1"]) == 2
    assert "--recycle_shm_mb must be >= 0 (0: never), got -1.0" in capsys.readouterr().err
