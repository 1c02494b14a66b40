"""The `tagrec` entry point: a command line imports only its command's module, and every
command behaves and reads as it does on the app with every command registered."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tagrec_cli.cli import COMMANDS, MODULES, app

# The CLI in a fresh interpreter: `main`, or the app with every command (as tests use it).
LAZY = "import sys; sys.argv[0] = 'tagrec'; from tagrec_cli.cli import main; main()"
FULL = "import sys; sys.argv[0] = 'tagrec'; from tagrec_cli.cli import app; app()"


def run(code: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          timeout=120, env={"COLUMNS": "100", "PATH": "/usr/bin:/bin"})


def test_every_command_is_listed_with_the_module_that_registers_it():
    registered = {(c.name or c.callback.__name__.replace("_", "-")):
                  c.callback.__module__.rsplit(".", 1)[1] for c in app.registered_commands}
    assert registered == COMMANDS
    assert set(COMMANDS.values()) == set(MODULES)


@pytest.mark.parametrize("args", [["recommend", "--help"], ["similar", "--help"],
                                  ["train", "--help"], ["ingest", "--help"],
                                  ["evaluate", "--help"], ["serve", "--help"],
                                  ["--help"], ["recomend"], ["recommend", "--bogus"], []])
def test_a_command_line_reads_the_same_with_only_its_module(args):
    lazy, full = run(LAZY, *args), run(FULL, *args)
    assert (lazy.returncode, lazy.stdout, lazy.stderr) == (full.returncode, full.stdout,
                                                           full.stderr)
    assert lazy.stdout or lazy.stderr


def test_main_imports_only_the_named_commands_module():
    probe = LAZY.replace("main()", "") + (
        "\ntry:\n    main()\nexcept SystemExit:\n    pass\n"
        "print(sorted(m.rsplit('.', 1)[1] for m in sys.modules if m.startswith("
        "'tagrec_cli.cli.')))")
    lines = run(probe, "recommend", "--help").stdout.splitlines()
    assert lines[-1] == str(["app", "query"])
    lines = run(probe, "--help").stdout.splitlines()
    assert lines[-1] == str(sorted(["app", *MODULES]))


def test_tables_off_a_terminal_are_not_wrapped_at_80_columns(monkeypatch):
    import io

    from tagrec_cli.cli.app import OFF_TERMINAL_WIDTH, LazyConsole

    for name in ("COLUMNS", "FORCE_COLOR", "TTY_COMPATIBLE"):  # each makes rich decide
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr("os.isatty", lambda fd: False)  # no terminal: a job's log, CI
    piped = LazyConsole(file=io.StringIO())
    assert piped.width == OFF_TERMINAL_WIDTH
    piped.print("x" * 150)
    assert piped.file.getvalue() == "x" * 150 + "\n"  # one line, as a file reader wants it
    monkeypatch.setenv("COLUMNS", "90")  # the user's width wins
    assert LazyConsole(file=io.StringIO()).width == 90
    monkeypatch.delenv("COLUMNS")
    monkeypatch.setattr("os.isatty", lambda fd: fd == 0)  # `... | less` from a terminal
    assert LazyConsole(file=io.StringIO()).width != OFF_TERMINAL_WIDTH  # rich's own
