import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def data_root():
    root = os.environ.get("PIXELPROB_DATA") or str(SHARED_DATA)
    if not (Path(root) / "MNIST" / "raw" / "t10k-images-idx3-ubyte").exists():
        pytest.fail(f"MNIST not found under {root}; set PIXELPROB_DATA (CI reads ../shared/data)")
    return root


@pytest.fixture(scope="session")
def tiny_pixelcnn():
    """A random-weight PixelCNN on 3x3 images with 4 levels, sharpened so answers are non-trivial."""
    from pixelprob.models import PixelCNN
    torch.manual_seed(0)
    m = PixelCNN(levels=4, shape=(1, 3, 3), channels=8, layers=2).eval()
    with torch.no_grad():
        m.out2.weight.mul_(4.0)
    return m


@pytest.fixture(scope="session")
def tiny_oracle(tiny_pixelcnn):
    from oracle import Oracle
    return Oracle(tiny_pixelcnn)


@pytest.fixture(scope="session")
def binary_pixelcnn():
    """A random-weight PixelCNN on 4x4 binary images."""
    from pixelprob.models import PixelCNN
    torch.manual_seed(1)
    m = PixelCNN(levels=2, shape=(1, 4, 4), channels=8, layers=2, gated=True).eval()
    with torch.no_grad():
        m.out2.weight.mul_(4.0)
    return m


@pytest.fixture(scope="session")
def binary_oracle(binary_pixelcnn):
    from oracle import Oracle
    return Oracle(binary_pixelcnn)
