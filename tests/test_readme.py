"""The README's commands still work: its make targets resolve, and every `tutor` command it shows exists."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def readme_commands() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", README, re.S)
    lines = [line.split("#")[0].strip() for block in blocks for line in block.splitlines()]
    return [line for line in lines if line]


def test_the_two_commands_come_first():
    first = readme_commands()[:2]
    assert [c.split()[:2] for c in first] == [["make", "run"], ["make", "test"]]


@pytest.mark.parametrize("target", ["run", "test"])
def test_make_targets_resolve(target):
    done = subprocess.run(["make", "-n", target], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "torch==2.13.0" in done.stdout or (ROOT / ".venv/.installed").exists()


def test_every_tutor_command_in_the_readme_exists():
    tutor = [shlex.split(c) for c in readme_commands() if "tutor " in c]
    assert tutor, "the README shows no tutor command"
    for argv in tutor:
        words = [w for w in argv[1:] if not w.startswith("-")]
        command = words[:1]
        done = subprocess.run([sys.executable, "-m", "tutor.cli", *command, "--help"], cwd=ROOT,
                              capture_output=True, text=True)
        if len(words) > 1 and re.search(rf"│ {re.escape(words[1])}\s", done.stdout):  # a sub-command
            command = words[:2]
            done = subprocess.run([sys.executable, "-m", "tutor.cli", *command, "--help"], cwd=ROOT,
                                  capture_output=True, text=True)
        assert done.returncode == 0, f"{' '.join(argv)}: {done.stderr}"
        for flag in (w.split("=")[0] for w in argv if w.startswith("--") and w != "--help"):
            assert flag in done.stdout, f"{' '.join(argv)}: {flag} is not an option of `tutor {' '.join(command)}`"


def test_readme_settings_are_real_settings():
    from tutor.settings import Settings

    toml = re.search(r"```toml\n(.*?)```", README, re.S).group(1)
    names = re.findall(r"^(\w+)\s*=", toml, re.M)
    assert names and set(names) <= set(Settings.model_fields)
    for env in re.findall(r"TUTOR_(\w+)=", README):
        assert env.lower() in Settings.model_fields
