"""Small helpers shared by the inference methods."""
from __future__ import annotations

import torch

from ..result import QueryResult


def raster_positions(mask):
    """Raster indices (row * W + col) of the pixels in a ``C x H x W`` mask (any channel)."""
    return torch.nonzero(mask.any(0).flatten()).flatten()


def is_prefix(observed):
    """True when every observed pixel comes before every unobserved one in raster order."""
    flat = observed.all(0).flatten()
    anyobs = observed.any(0).flatten()
    if not anyobs.any():
        return True
    last = int(torch.nonzero(anyobs).max())
    return bool(flat[: last + 1].all())


def result(model, images, observed, target, probs, method, exact, **kw):
    return QueryResult(probs_full=probs, method=method, exact=exact, target_mask=target,
                       images=images, observed_mask=observed, **kw)


def target_logits(logits, target):
    """``B x T x levels`` logits at the target pixels from ``B x levels x C x H x W``."""
    return logits.permute(0, 2, 3, 4, 1)[:, target]  # B x T x L
