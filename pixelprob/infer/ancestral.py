"""Ancestral (forward) sampling, for evidence that is a raster-order prefix.

When every observed pixel precedes every hidden one, the chain rule samples
the hidden pixels exactly: ``x_i ~ p(x_i | x_<i)`` in raster order
(questions b and f). Target marginals are Rao-Blackwellised: instead of a
histogram of draws, average the model's own conditional,

    p(x_t | x_obs) = E_{x_<t ~ p(. | x_obs)} [ p(x_t | x_<t) ]
                   ~ (1/S) sum_s softmax(logits_t(x^(s))),

which has lower variance, with standard error ``std_s / sqrt(S)``. Sampling
goes through the cached sampler (:mod:`pixelprob.models.fast`) and stops at
the last target pixel.
"""
from __future__ import annotations

import torch

from . import register
from ._common import is_prefix, raster_positions, result, target_logits


def _applies(model, observed, target):
    if not is_prefix(observed):
        return ("it needs the observed pixels to be a raster-order prefix (every observed pixel before every "
                "hidden one); this evidence is not, so forward samples would ignore later evidence")
    return None


@register("ancestral", kinds=("pixelcnn",), exact=False, applies=_applies)
@torch.no_grad()
def solve(model, images, observed, target, num_samples=None, batch=256):
    """Exact forward samples; Rao-Blackwellised marginals."""
    S = num_samples or 256
    B = images.shape[0]
    _, H, W = model.shape
    upto = int(raster_positions(target).max()) + 1
    mean = torch.zeros(B, int(target.sum()), model.levels, dtype=torch.float64, device=images.device)
    sq = torch.zeros_like(mean)
    samples = []
    for b in range(B):
        draws = []
        for s0 in range(0, S, batch):
            n = min(batch, S - s0)
            x = model.sample(n, given=images[b: b + 1].expand(n, -1, -1, -1), mask=observed, upto=upto)
            p = torch.softmax(target_logits(model(x), target).double(), -1)  # n x T x L
            mean[b] += p.sum(0)
            sq[b] += (p * p).sum(0)
            draws.append(x[:, target])
        samples.append(torch.cat(draws))
    mean /= S
    var = (sq / S - mean * mean).clamp_min(0) * S / max(S - 1, 1)
    stderr = (var / S).sqrt()
    return result(model, images, observed, target, mean, "ancestral", False, stderr_full=stderr,
                  samples_full=torch.stack(samples),
                  notes=[f"{S} exact ancestral samples per image; marginals Rao-Blackwellised"],
                  diagnostics={"num_samples": S})
