"""Dependency floors that are security fixes: an older release in the range would be unsafe."""

from __future__ import annotations

import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"

# package -> first safe release
SAFE_FLOORS = {
    "torch": "2.6",  # CVE-2025-32434: torch.load(weights_only=True) could still run code before 2.6
    "torchvision": "0.21",  # the torchvision built against torch 2.6
    "python-multipart": "0.0.18",  # CVE-2024-53981: malformed multipart bodies stall the server
}


def _requirements() -> dict[str, Requirement]:
    deps = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    return {r.name: r for r in map(Requirement, deps)}


@pytest.mark.parametrize("name", sorted(SAFE_FLOORS))
def test_no_unsafe_release_satisfies_the_requirement(name):
    req = _requirements()[name]
    floor = Version(SAFE_FLOORS[name])
    # the release just below the floor (e.g. 2.5.99) must be excluded, the floor itself allowed
    below = Version(".".join(map(str, floor.release[:-1] + (floor.release[-1] - 1, 99))))
    assert not req.specifier.contains(below, prereleases=True), f"{req} admits {below}"
    assert req.specifier.contains(floor)


@pytest.mark.parametrize("name", sorted(SAFE_FLOORS))
def test_installed_release_is_safe(name):
    assert Version(version(name)).release >= Version(SAFE_FLOORS[name]).release
