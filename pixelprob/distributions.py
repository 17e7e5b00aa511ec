"""PixelCNN images as Pyro distributions, and the query as a Pyro program.

:class:`PixelCNNImage` is a ``TorchDistribution`` over whole images (event
shape ``C x H x W``, integer support) with the exact chain-rule density

    log p(x) = sum_i log p(x_i | x_<i)

and ancestral ``sample``. It can sit in any ``pyro.sample`` statement.

A *partly* observed image cannot be scored by Pyro's masks, which act on batch
dimensions only, while a PixelCNN's pixels all live in one event. So
:func:`pixelcnn_query_program` makes the hidden pixels one latent site,
``"hidden"`` (a vector of levels, uniform base measure), and adds the full
joint with ``pyro.factor``; the program's density over ``hidden`` is then
``p(hidden, observed)``, proportional to the posterior ``p(hidden | observed)``.
Gibbs kernels and guides act on that site.
"""
from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import torch
from torch.distributions import constraints


class PixelCNNImage(dist.TorchDistribution):
    """Distribution over ``C x H x W`` integer images defined by a PixelCNN."""

    arg_constraints = {}
    has_enumerate_support = False

    def __init__(self, model, batch_shape=torch.Size(), validate_args=None):
        self.model = model
        super().__init__(torch.Size(batch_shape), torch.Size(model.shape), validate_args=validate_args)

    @property
    def support(self):
        return constraints.integer_interval(0, self.model.levels - 1)

    def expand(self, batch_shape, _instance=None):
        return PixelCNNImage(self.model, batch_shape)

    def sample(self, sample_shape=torch.Size()):
        shape = torch.Size(sample_shape) + self.batch_shape
        n = max(1, math.prod(shape))
        return self.model.sample(n).view(shape + self.event_shape)

    def log_prob(self, value):
        lead = value.shape[: value.dim() - 3]
        return self.model.log_prob(value.reshape(-1, *self.event_shape).long()).view(lead)


def pixelcnn_query_program(model, mask_hidden, images):
    """A Pyro model: ``hidden`` (the pixels under ``mask_hidden``) given the rest of ``images``.

    ``images``: ``B x C x H x W`` integer; ``mask_hidden``: ``C x H x W`` bool.
    The site ``"hidden"`` has shape ``B x n_hidden``; its density is the full
    joint ``p(x)``, i.e. the unnormalised posterior.
    """
    n = int(mask_hidden.sum())
    B = images.shape[0]
    probs = torch.full((B, n, model.levels), 1.0 / model.levels, device=images.device)
    hidden = pyro.sample("hidden", dist.Categorical(probs=probs).to_event(1))
    x = images.clone()
    x[:, mask_hidden] = hidden.long()
    # the uniform base measure is divided back out so the site's total density is p(x)
    pyro.factor("joint", model.log_prob(x) + n * math.log(model.levels))
    return hidden
