"""Gradient check of the autoregressive property.

A network is autoregressive in raster order when the output at pixel ``i``
has zero derivative with respect to every input pixel ``j >= i``. We seed the
gradient of each output pixel separately (one batch element per output pixel,
so one backward pass covers them all) at random inputs and report every
``(output, input)`` pair that breaks the rule.
"""
from __future__ import annotations

import torch


def check_autoregressive(model, trials: int = 2, seed: int = 0):
    """Return the offending ``((r_out, c_out), (r_in, c_in))`` pairs (empty when causal).

    ``model`` needs ``forward_float(xf)`` (logits ``B x L x C x H x W`` from a
    float image) and ``shape``. Inputs are random, ``trials`` times, so that
    a dependency cannot hide behind an activation that happens to be flat.
    """
    C, H, W = model.shape
    n = H * W
    g = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    bad = torch.zeros(n, n, dtype=torch.bool)
    was_training = model.training
    model.eval()
    try:
        for _ in range(trials):
            xf = (torch.rand(n, C, H, W, generator=g) * 2 - 1).to(device).requires_grad_(True)
            out = model.forward_float(xf)  # n x L x C x H x W
            sel = torch.eye(n, device=device).view(n, 1, 1, H, W)
            (out * sel).sum().backward()
            dep = xf.grad.abs().sum(1).view(n, n) > 0  # [output pixel, input pixel]
            bad |= dep.cpu()
    finally:
        model.train(was_training)
    future = torch.ones(n, n, dtype=torch.bool).triu()  # input index >= output index
    pairs = torch.nonzero(bad & future)
    return [((int(o) // W, int(o) % W), (int(i) // W, int(i) % W)) for o, i in pairs]
