import os
import zlib
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]

# Real Gaia/APOGEE files live beside the checkout (../shared/realdata) in development
# and CI; they are never committed. LAMFAST_REALDATA overrides the location.
REALDATA = Path(os.environ.get("LAMFAST_REALDATA",
                               REPO.parent / "shared" / "realdata"))


@pytest.fixture
def realdata() -> Path:
    if not REALDATA.is_dir():
        pytest.skip(f"real data folder not present ({REALDATA}); it ships beside the checkout only")
    return REALDATA


@pytest.fixture
def rng(request) -> np.random.Generator:
    """Fresh random data per test, reproducible from the test's name."""
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    """A tiny saved model (trained on 300 synthetic stars) for the labelling jobs' tests,
    made once per run; tests read it, never change it."""
    from _label_data import save_tiny_model, synthetic_catalog

    folder = tmp_path_factory.mktemp("model")
    save_tiny_model(folder / "model", synthetic_catalog(300, seed=1))
    return folder / "model"


@pytest.fixture(scope="module")
def single_torch_thread():
    """One torch thread for a module of tiny models: several OpenMP threads on a busy
    shared machine can be 100x slower (spinning barriers). Use with
    ``pytestmark = pytest.mark.usefixtures("single_torch_thread")``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def same_lamfast(cwd) -> dict:
    """subprocess.run kwargs so a child imports the very lamfast this test imported
    (the installed one in CI, the checkout in development), never a stray copy."""
    import lamfast

    root = str(Path(lamfast.__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    return {"cwd": cwd, "env": {**os.environ, "PYTHONPATH": path}}
