"""The README's quickstart runs as written: every `$ command` of its console blocks, in order, in one folder."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BIN = Path(sys.executable).parent


def readme_commands() -> list[tuple[str, int]]:
    """(command, expected exit code) for each `$ ` line; a command whose output starts with 'error:' must fail."""
    commands: list[tuple[str, int]] = []
    for block in re.findall(r"```console\n(.*?)```", README.read_text(), flags=re.S):
        lines = block.splitlines()
        for i, line in enumerate(lines):
            if not line.startswith("$ "):
                continue
            following = next((x for x in lines[i + 1:] if x.strip()), "")
            commands.append((line[2:], 1 if following.startswith("error:") else 0))
    return commands


def test_readme_has_the_two_setup_commands_first():
    text = README.read_text()
    first_block = re.search(r"```bash\n(.*?)```", text, flags=re.S).group(1)
    assert [line.split()[:2] for line in first_block.splitlines() if line.strip()] == [["make", "demo"], ["make", "test"]]


@pytest.mark.slow
def test_readme_quickstart_runs(tmp_path):
    commands = readme_commands()
    assert len(commands) >= 15
    env = dict(os.environ, COLUMNS="100")
    for command, expected in commands:
        argv = shlex.split(command)
        if argv[0] in ("onnxdeploy", "python"):
            argv[0] = str(BIN / argv[0]) if argv[0] == "onnxdeploy" else sys.executable
        proc = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, env=env, timeout=600)
        assert proc.returncode == expected, f"{command}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
        assert "Traceback" not in proc.stderr, command
