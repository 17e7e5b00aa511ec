"""Brute-force truth for tiny models: enumerate every image.

For a PixelCNN on a 3x3 image with 4 levels there are 4**9 = 262,144 images;
their exact joint probabilities answer any query by summation. For a VAE with
a 1-D latent, ``p(x) = integral p(x | z) N(z; 0, 1) dz`` is computed by
quadrature on a fine grid.
"""
import itertools
import math

import torch


def all_images(levels, shape):
    C, H, W = shape
    n = C * H * W
    grids = torch.cartesian_prod(*[torch.arange(levels)] * n) if n > 1 else torch.arange(levels).view(-1, 1)
    return grids.view(-1, C, H, W)


@torch.no_grad()
def joint_log_probs(model, batch=65536):
    """All images and their exact ``log p(x)`` under ``model``."""
    xs = all_images(model.levels, model.shape)
    lp = torch.cat([model.log_prob(xs[i:i + batch]) for i in range(0, len(xs), batch)])
    return xs, lp


class Oracle:
    """Exact answers for a tiny model from the enumerated joint."""

    def __init__(self, model, log_probs=None):
        self.model = model
        if log_probs is None:
            self.xs, self.lp = joint_log_probs(model)
        else:
            self.xs, self.lp = log_probs
        self.p = torch.softmax(self.lp.double(), 0)  # renormalise against float error

    def posterior_weights(self, image, observed):
        """p(x | observed pixels of image) over all enumerated images."""
        match = (self.xs[:, observed] == image[observed]).all(1)
        w = self.p * match
        return w / w.sum()

    def marginals(self, image, observed, target):
        """T x levels exact per-pixel marginals of the target given the evidence."""
        w = self.posterior_weights(image, observed)
        vals = self.xs[:, target]  # N x T
        out = torch.zeros(vals.shape[1], self.model.levels, dtype=torch.float64)
        for t in range(vals.shape[1]):
            out[t].index_add_(0, vals[:, t], w)
        return out

    def joint(self, image, observed, target):
        """Exact distribution over joint target configurations: dict tuple -> prob."""
        w = self.posterior_weights(image, observed)
        vals = self.xs[:, target]
        out = {}
        keep = w > 0
        for v, p in zip(vals[keep].tolist(), w[keep].tolist()):
            out[tuple(v)] = out.get(tuple(v), 0.0) + p
        return out

    def sample(self, n, generator=None):
        idx = torch.multinomial(self.p.float(), n, replacement=True, generator=generator)
        return self.xs[idx]


def tv(p, q):
    """Total variation between distributions along the last dimension (max over the rest)."""
    return float(0.5 * (torch.as_tensor(p, dtype=torch.float64) - torch.as_tensor(q, dtype=torch.float64)).abs().sum(-1).max())
