"""Exact answers for a single target pixel of a PixelCNN.

* **Read-out (questions a and c).** When every pixel before ``i`` in raster
  order is observed and none after it, the chain rule gives the answer
  directly: ``p(x_i | x_obs) = p(x_i | x_<i)``, the softmax of the logits at
  ``i``. One forward pass. With nothing observed and ``i`` the first pixel,
  this is question a.

* **Enumeration of one pixel (question e).** When every pixel except ``i`` is
  observed,

      p(x_i = v | x_-i)  is proportional to  p(x_i = v | x_<i) * prod_{j > i} p(x_j | x_<j, x_i = v),

  and only the factors ``j`` in ``i``'s future receptive field change with
  ``v``. All ``levels`` values are evaluated in one batched local
  re-evaluation (:func:`pixelprob.models.fast.full_conditional`).
"""
from __future__ import annotations

import torch

from ..models import fast
from . import register
from ._common import raster_positions, result, target_logits


def _case(model, observed, target):
    if int(target.any(0).sum()) != 1:
        return None, "it answers one target pixel at a time (use enumerate, ancestral, gibbs or svi for regions)"
    i = int(raster_positions(target)[0])
    flat = observed.all(0).flatten()
    before, after = flat[:i], flat[i + 1:]
    if bool(before.all()) and not bool(observed.any(0).flatten()[i + 1:].any()):
        return "readout", None
    if bool(before.all()) and bool(after.all()):
        if model.shape[0] != 1:
            return None, "one-pixel enumeration needs single-channel images"
        return "enumerate", None
    return None, ("it needs every pixel before the target observed and none after it (chain-rule read-out), "
                  "or every other pixel observed (one-pixel enumeration)")


def _applies(model, observed, target):
    return _case(model, observed, target)[1]


@register("exact", kinds=("pixelcnn",), exact=True, applies=_applies)
@torch.no_grad()
def solve(model, images, observed, target, num_samples=None, chunk=64):
    """Chain-rule read-out or one-pixel enumeration (exact)."""
    case, _ = _case(model, observed, target)
    if case == "readout":
        probs = torch.softmax(target_logits(model(images), target), -1)
        notes = ["p(x_i | x_<i) read off the chain rule (one forward pass)"]
    else:
        _, H, W = model.shape
        i = int(raster_positions(target)[0])
        cache = fast.Cache(model, images)
        logp, _ = fast.full_conditional(cache, i // W, i % W, chunk=chunk)
        probs = logp.exp().unsqueeze(1)
        notes = [f"p(x_i | x_-i) by enumerating {model.levels} values of x_i with local re-evaluation"]
    return result(model, images, observed, target, probs.double(), "exact", True, notes=notes)
