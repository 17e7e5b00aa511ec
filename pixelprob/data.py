"""MNIST as integer tensors.

Images are ``uint8`` tensors of shape ``N x 1 x 28 x 28`` with values in
``0..255`` (or ``0..K-1`` after :func:`requantize`). The 60,000 training
digits are split 50,000 / 10,000 into train and validation with a fixed seed;
the 10,000 test digits are the test split.

MNIST is by Yann LeCun, Corinna Cortes and Christopher J.C. Burges (CC BY-SA 3.0).
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

SPLITS = ("train", "val", "test")
SPLIT_SEED = 1234
ENV_VAR = "PIXELPROB_DATA"
DEFAULT_ROOT = Path.home() / ".cache" / "pixelprob" / "data"


def data_root(root=None) -> Path:
    """The MNIST root: the argument, else ``$PIXELPROB_DATA``, else ``~/.cache/pixelprob/data``."""
    if root is not None:
        return Path(root)
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR])
    return DEFAULT_ROOT


def requantize(x: torch.Tensor, levels: int) -> torch.Tensor:
    """Map 0..255 onto ``levels`` equal-width bins (``levels=2`` binarises at 128)."""
    if not isinstance(levels, int) or not 2 <= levels <= 256:
        raise ValueError(f"levels must be an integer in 2..256, got {levels!r}")
    if levels == 256:
        return x
    return (x.long() * levels // 256).to(torch.uint8)


def _raw(root: Path, train: bool, download: bool):
    from torchvision.datasets import MNIST

    try:
        ds = MNIST(str(root), train=train, download=download)
    except Exception as err:  # torchvision raises RuntimeError or URLError
        raise FileNotFoundError(
            f"MNIST not found under {root / 'MNIST' / 'raw'} "
            f"({'download failed: ' + str(err) if download else 'download disabled'}). "
            f"Put the four IDX files (train-images-idx3-ubyte, ...) there, or pass root=DIR, "
            f"or set {ENV_VAR}=DIR where DIR/MNIST/raw holds them, "
            f"or allow download=True on a machine with internet access.") from err
    return ds.data.unsqueeze(1).contiguous(), ds.targets.clone()


def load_mnist(split: str = "train", root=None, levels: int = 256, download=None, with_labels=False):
    """MNIST ``split`` ('train', 'val' or 'test') as ``uint8`` ``N x 1 x 28 x 28``.

    ``root`` defaults to :func:`data_root`; ``download`` defaults to True only
    when neither ``root`` nor ``$PIXELPROB_DATA`` names a folder.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    explicit = root is not None or bool(os.environ.get(ENV_VAR))
    root = data_root(root)
    if download is None:
        download = not explicit
    if split == "test":
        x, y = _raw(root, False, download)
    else:
        x, y = _raw(root, True, download)
        perm = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(SPLIT_SEED))
        idx = perm[:50000] if split == "train" else perm[50000:]
        x, y = x[idx], y[idx]
    x = requantize(x, levels)
    return (x, y) if with_labels else x


def shipped_digits():
    """The 16 MNIST test digits shipped in the package (``uint8`` images, labels), for the demo.

    They are the first 16 images of the MNIST test set (LeCun, Cortes, Burges; CC BY-SA 3.0).
    """
    path = Path(__file__).parent / "assets" / "mnist_test_digits.pt"
    d = torch.load(path, weights_only=True)
    return d["images"], d["labels"]


def get_image(spec, root=None):
    """An image from a spec ``"test:7"``, ``"val:3"`` or ``"train:0"``.

    ``test:N`` with ``N < 16`` comes from the shipped digits (no data needed).
    """
    try:
        split, idx = spec.split(":")
        idx = int(idx)
    except ValueError:
        raise ValueError(f"image spec must look like 'test:7' (split:index), got {spec!r}") from None
    if split == "test" and 0 <= idx < 16:
        return shipped_digits()[0][idx]
    x = load_mnist(split, root)
    if not 0 <= idx < len(x):
        raise ValueError(f"index {idx} is outside the {split} split (0..{len(x) - 1})")
    return x[idx]
