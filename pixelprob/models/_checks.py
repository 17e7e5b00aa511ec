"""Input checks shared by every model: one wording of each error."""
from __future__ import annotations

import torch


def check_levels_shape(levels, shape):
    if not isinstance(levels, int) or not 2 <= levels <= 256:
        raise ValueError(f"levels must be an integer in 2..256, got {levels!r}")
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"shape must be (channels, height, width) with positive sizes, got {shape!r}")


def check_images(x, shape, levels, name="x"):
    """Raise a clear error unless ``x`` is an integer ``batch x C x H x W`` tensor of levels."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of integers, got {type(x).__name__}")
    if x.dtype.is_floating_point or x.dtype == torch.bool or x.is_complex():
        raise TypeError(f"{name} must hold integer levels (e.g. torch.long or torch.uint8), got dtype {x.dtype}")
    if x.dim() != 4 or tuple(x.shape[1:]) != tuple(shape):
        raise ValueError(f"{name} must have shape (batch, {', '.join(map(str, shape))}), got {tuple(x.shape)}")
    if x.numel() and (int(x.min()) < 0 or int(x.max()) >= levels):
        raise ValueError(
            f"{name} has values in [{int(x.min())}, {int(x.max())}] but this model has levels 0..{levels - 1}")
