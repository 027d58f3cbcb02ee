"""Shared pytest set-up for the unit tests (beside each module), tests/ and the notebooks."""

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent

# Notebooks executed by nbmake inherit this process's environment: run them in smoke mode.
os.environ.setdefault("SEGLAB_SMOKE", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# The course's real sample data lives beside the checkout in CI (../shared/data); a fresh
# clone does not have it. SEGLAB_SAMPLE_DATA points at it so the notebooks can find it too.
_default_samples = REPO_ROOT.parent / "shared" / "data"
if "SEGLAB_SAMPLE_DATA" not in os.environ and _default_samples.is_dir():
    os.environ["SEGLAB_SAMPLE_DATA"] = str(_default_samples)


def _sample_root() -> Path | None:
    value = os.environ.get("SEGLAB_SAMPLE_DATA")
    return Path(value) if value and Path(value).is_dir() else None


@pytest.fixture(scope="session")
def sample_data():
    """Return a function that gives the path of one sample dataset, or skips the test."""

    def get(name: str) -> Path:
        root = _sample_root()
        if root is None:
            pytest.skip(
                "sample data not found: set SEGLAB_SAMPLE_DATA or put the course's shared/data "
                "beside the checkout"
            )
        path = root / name
        if not path.is_dir():
            pytest.skip(f"sample dataset {name!r} not found under {root}")
        return path

    return get
