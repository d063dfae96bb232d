"""Run folders' environment record: which machine and which code made a run."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from seqrec import runs

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")


def test_environment_names_the_cpu_and_the_code():
    env = runs.environment()
    if Path("/proc/cpuinfo").is_file():
        assert env["cpu"] and env["cpu"] == runs.cpu_model()
    here = Path(runs.__file__).resolve().parent
    head = subprocess.run(
        ["git", "-C", str(here), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    )
    if shutil.which("git") is None or head.returncode != 0:
        assert env["source"] is None
    else:  # CI: a fresh clone installed editable
        assert env["source"].removesuffix("+dirty") == head.stdout.strip()


@needs_git
def test_source_commit_only_for_tracked_code(tmp_path, monkeypatch):
    """Code copied into another repository's folder (a venv inside a checkout) is not that
    repository's commit; the same file tracked is, and an edit marks it dirty."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t", *args],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()

    git("init", "-q")
    code = tmp_path / "pkg" / "runs.py"
    code.parent.mkdir()
    code.write_text("x = 1\n")
    monkeypatch.setattr(runs, "__file__", str(code))
    assert runs.source_commit() is None  # untracked: say nothing rather than a wrong commit
    git("add", "pkg/runs.py")
    git("commit", "-q", "-m", "c")
    assert runs.source_commit() == git("rev-parse", "--short", "HEAD")
    code.write_text("x = 2\n")
    assert runs.source_commit() == git("rev-parse", "--short", "HEAD") + "+dirty"
    monkeypatch.setattr(runs, "__file__", "/nonexistent/runs.py")
    assert runs.source_commit() is None


def test_git_is_none_without_git_and_its_code_otherwise(tmp_path, monkeypatch):
    """No git (or a git that cannot start) is an answer, not a crash: the environment record
    and the report's ignore check both go on without it."""
    if shutil.which("git") is not None:
        done = runs.git(tmp_path, "rev-parse", "--is-inside-work-tree")
        assert done is not None and done.returncode != 0  # tmp_path: not a work tree
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert runs.git(tmp_path, "status") is None
    assert runs.source_commit() is None
