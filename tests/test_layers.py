"""The architecture in pyproject.toml ([tool.importlinter]) holds: run by the suite, and shown to bite."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LINT = [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command as c; sys.exit(c())"]


def _lint(root: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(root))  # the package under `root` is the one analysed
    return subprocess.run(LINT + ["--config", str(root / "pyproject.toml"), "--no-cache"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300)


def test_import_contracts_are_kept():
    proc = _lint(REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout


def _copy_repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    shutil.copytree(REPO / "cnnsweep", root / "cnnsweep", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
    return root


def _lint_with(tmp_path: Path, module: str, extra: str) -> subprocess.CompletedProcess:
    """lint-imports on a copy of the package where `module` (a path under cnnsweep/) gains `extra`."""
    root = _copy_repo(tmp_path)
    path = root / "cnnsweep" / module
    path.write_text(path.read_text() + extra)
    return _lint(root)


def test_core_importing_ray_breaks_a_contract(tmp_path):
    proc = _lint_with(tmp_path, "engine/seed.py", "\n\ndef _oops():\n    import ray  # lazy imports count too\n")
    assert proc.returncode != 0
    assert "cnnsweep.engine.seed -> ray" in proc.stdout


def test_core_importing_the_cli_breaks_the_layers(tmp_path):
    proc = _lint_with(tmp_path, "data/split.py", "\n\nfrom cnnsweep.cli.app import app  # noqa\n")
    assert proc.returncode != 0
    assert "cnnsweep.data.split -> cnnsweep.cli.app" in proc.stdout
