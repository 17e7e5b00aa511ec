"""Regions (named pixel masks) and evidence (a region plus the images it reveals).

A :class:`Region` is a rule that gives a boolean mask for an image shape
``(C, H, W)``, so the same name works on 28x28 MNIST and on 3x3 test images.
The question names of the design:

* ``first_pixel``: pixel ``(0, 0)``;
* ``middle_pixel``: pixel ``(H // 2, W // 2)``;
* ``top_half``: every pixel before the middle pixel in raster order;
* ``bottom_half``: every pixel after it.

Regions combine with ``|`` (union), ``&`` (intersection) and ``~``
(complement). Calling a region on images gives :class:`Evidence`:
``bottom_half(image)`` observes the bottom half of ``image``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch


class Region:
    """A named rule ``(C, H, W) -> bool mask of that shape``."""

    def __init__(self, name: str, rule: Callable):
        self.name = name
        self._rule = rule

    def mask(self, shape) -> torch.Tensor:
        shape = tuple(int(s) for s in shape)
        if len(shape) != 3:
            raise ValueError(f"a region needs an image shape (C, H, W), got {shape}")
        m = torch.as_tensor(self._rule(shape)).bool()
        if tuple(m.shape) != shape:
            try:
                m = m.expand(shape).clone()
            except RuntimeError:
                raise ValueError(f"region {self.name!r} gives a mask of shape {tuple(m.shape)}, "
                                 f"not one for images of shape {shape}") from None
        return m

    def __or__(self, other):
        other = as_region(other)
        return Region(f"({self.name} | {other.name})", lambda s: self.mask(s) | other.mask(s))

    def __and__(self, other):
        other = as_region(other)
        return Region(f"({self.name} & {other.name})", lambda s: self.mask(s) & other.mask(s))

    def __invert__(self):
        return Region(f"~{self.name}", lambda s: ~self.mask(s))

    def __call__(self, images):
        """Evidence: this region of ``images`` (``C x H x W`` or ``B x C x H x W``)."""
        return Evidence(self, images)

    def __repr__(self):
        return f"Region({self.name})"


def _raster(shape):
    C, H, W = shape
    return torch.arange(H * W).view(1, H, W).expand(C, H, W)


def pixel(r: int, c: int) -> Region:
    """The single pixel at row ``r``, column ``c`` (all channels)."""
    def rule(shape):
        C, H, W = shape
        if not (0 <= r < H and 0 <= c < W):
            raise ValueError(f"pixel ({r}, {c}) is outside a {H}x{W} image")
        m = torch.zeros(shape, dtype=torch.bool)
        m[:, r, c] = True
        return m
    return Region(f"pixel({r}, {c})", rule)


def rows(a: int, b: int) -> Region:
    """Rows ``a`` to ``b - 1``."""
    def rule(shape):
        m = torch.zeros(shape, dtype=torch.bool)
        m[:, a:b] = True
        return m
    return Region(f"rows({a}, {b})", rule)


def rect(r0: int, r1: int, c0: int, c1: int) -> Region:
    """Rows ``r0:r1`` and columns ``c0:c1``."""
    def rule(shape):
        m = torch.zeros(shape, dtype=torch.bool)
        m[:, r0:r1, c0:c1] = True
        return m
    return Region(f"rect({r0}, {r1}, {c0}, {c1})", rule)


def from_mask(mask, name="mask") -> Region:
    """Any boolean mask of shape ``C x H x W`` or ``H x W``."""
    mask = torch.as_tensor(mask)
    if mask.dtype != torch.bool:
        raise TypeError(f"a mask region needs a boolean tensor, got dtype {mask.dtype}")
    if mask.dim() == 2:
        mask = mask.unsqueeze(0)
    if mask.dim() != 3:
        raise ValueError(f"a mask must be H x W or C x H x W, got shape {tuple(mask.shape)}")
    return Region(name, lambda shape: mask)


def _middle(shape):
    _, H, W = shape
    return (H // 2) * W + W // 2


first_pixel = Region("first_pixel", lambda s: pixel(0, 0).mask(s))
middle_pixel = Region("middle_pixel", lambda s: _raster(s) == _middle(s))
top_half = Region("top_half", lambda s: _raster(s) < _middle(s))
bottom_half = Region("bottom_half", lambda s: _raster(s) > _middle(s))
everything = Region("everything", lambda s: torch.ones(s, dtype=torch.bool))
nothing = Region("nothing", lambda s: torch.zeros(s, dtype=torch.bool))

NAMED = {r.name: r for r in (first_pixel, middle_pixel, top_half, bottom_half, everything, nothing)}


def as_region(x) -> Region:
    """A Region from a Region, a known name, or a boolean mask."""
    if isinstance(x, Region):
        return x
    if isinstance(x, str):
        if x in NAMED:
            return NAMED[x]
        raise ValueError(f"unknown region name {x!r}; named regions: {sorted(NAMED)}")
    if isinstance(x, torch.Tensor):
        return from_mask(x)
    raise TypeError(f"expected a Region, a region name or a boolean mask, got {type(x).__name__}")


@dataclass
class Evidence:
    """Observed pixels: ``region`` of ``images``.

    ``images`` is ``C x H x W`` (one image) or ``B x C x H x W`` (a batch,
    answered in one call). Only the pixels inside the region are read.
    """

    region: Region
    images: torch.Tensor

    def __post_init__(self):
        self.region = as_region(self.region)
        if not isinstance(self.images, torch.Tensor):
            self.images = torch.as_tensor(self.images)

    @property
    def batched(self):
        return self.images.dim() == 4

    def mask(self, shape):
        return self.region.mask(shape)


def as_evidence(observe, shape):
    """Normalise ``observe`` to ``(Evidence or None)``.

    Accepts ``None`` (nothing observed), an :class:`Evidence`, or a
    ``(mask_or_region, images)`` pair.
    """
    if observe is None:
        return None
    if isinstance(observe, Evidence):
        return observe
    if isinstance(observe, (tuple, list)) and len(observe) == 2:
        return Evidence(as_region(observe[0]), observe[1])
    if isinstance(observe, Region):
        raise TypeError(
            f"observe={observe.name} names pixels but not their values; pass {observe.name}(image) "
            f"or a (mask, image) pair")
    raise TypeError(f"observe must be None, Evidence (e.g. bottom_half(image)) or a (mask, image) pair, "
                    f"got {type(observe).__name__}")
