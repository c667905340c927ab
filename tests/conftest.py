"""Shared fixtures: the location of the optional real data beside the repository."""

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """``../shared/data`` when present; the test is skipped otherwise."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not available")
    return SHARED_DATA


def real_maps_dir() -> Path:
    """Folder of real PP-OCRv4 maps of SROIE receipts (``scripts/make_real_maps.py``).

    ``$UNCLIP_TUNER_REALMAPS`` when set (CI makes them there), else ``../realmaps/sroie_dev``.
    """
    import os

    return Path(os.environ.get("UNCLIP_TUNER_REALMAPS", REPO.parent / "realmaps" / "sroie_dev"))


@pytest.fixture
def real_maps() -> Path:
    """The real-map folder; the test is skipped when it is absent."""
    d = real_maps_dir()
    if not (d.is_dir() and any(d.glob("*.npz"))):
        pytest.skip(f"real probability maps not found at {d} (scripts/make_real_maps.py makes them)")
    return d
