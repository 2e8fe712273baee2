"""README.md tells the truth: its Quick start runs as written, every `lamfast ...` command
it shows parses with the real command line, every `python -m benchmarks...` command starts
from the repository root, and CI runs its test command verbatim."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys

import pytest

from conftest import REPO, same_lamfast

README = (REPO / "README.md").read_text()


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, re.S)


def _commands(prefix: str) -> list[str]:
    """Shell lines starting with ``prefix`` in README's bash blocks, continuations joined,
    comments and placeholder words (``INPUTS...``, ``...``) removed."""
    out = []
    for block in _blocks("bash"):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" # ")[0].split("  #")[0].strip()
            for part in line.split("&&"):
                part = part.strip()
                if part.startswith(prefix):
                    out.append(" ".join(w for w in shlex.split(part) if "..." not in w))
    return out


def test_quick_start_runs_as_written(tmp_path):
    (block,) = [b for b in _blocks("python") if "lamfast.predict" in b]
    proc = subprocess.run([sys.executable, "-c", block], capture_output=True, text=True,
                          timeout=600, **same_lamfast(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "teff_error" in proc.stdout and " K " in proc.stdout  # the table prints with units


LAMFAST_COMMANDS = _commands("lamfast ")


def test_readme_shows_lamfast_commands():
    assert {c.split()[1] for c in LAMFAST_COMMANDS} >= {"demo", "label", "train", "data", "average"}


@pytest.mark.parametrize("command", LAMFAST_COMMANDS)
def test_every_lamfast_command_in_readme_parses(command):
    from lamfast.cli import build_parser

    try:
        build_parser().parse_args(shlex.split(command)[1:])
    except SystemExit as e:  # argparse's way of refusing a command line
        pytest.fail(f"README command does not parse ({e}): {command}")


BENCHMARK_COMMANDS = sorted(set(re.findall(r"python -m (benchmarks(?:\.\w+)?)", README)))


@pytest.mark.parametrize("module", BENCHMARK_COMMANDS)
def test_benchmark_commands_start_from_the_repository_root(module):
    # As a user types it: from the checkout, nothing on PYTHONPATH. The checkout's lamfast/
    # has no compiled core in CI, so this also checks the benchmarks reach the installed one.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "TRITON_INTERPRET")}
    proc = subprocess.run([sys.executable, "-m", module, "--help"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_ci_runs_the_readme_test_command_verbatim():
    setup = README[README.index("## Set-up commands"):README.index("## Quick start")]
    test_command = _blocks("bash")[0].strip()
    assert test_command in setup and "pytest" in test_command
    assert test_command in (REPO / ".ci" / "run").read_text()
