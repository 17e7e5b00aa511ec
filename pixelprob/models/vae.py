"""A variational autoencoder over integer images, natively and as a Pyro program.

Generative model (``D = latent_dim``)::

    z ~ N(0, I_D),        x_i | z ~ Categorical(softmax(decode(z)_i))  independently for every pixel i,

so ``log p(x | z) = sum_i log p(x_i | z)`` and any set of hidden pixels is
conditionally independent given ``z``. The per-pixel categorical has the same
``levels`` values as the PixelCNN, so bits per dimension are comparable
(``likelihood="bernoulli"`` is the same thing parameterised by one logit per
pixel, for ``levels == 2``).

Inference network ``q(z | x) = N(mu(x), diag(sigma(x)^2))``. The encoder reads
the image with its hidden pixels set to zero and the observation mask as extra
channels, so ``encode(x, mask)`` gives a Gaussian for a partly observed image
too. That Gaussian is an *approximation* of ``p(z | x_obs)``, used as a
starting point or a proposal; every method that uses it corrects for it
(importance weights, Metropolis-Hastings) or says that it does not.

Bounds, per image, in nats:

* ELBO: ``E_q[log p(x|z)] - KL(q(z|x) || p(z))``, one reparameterised draw,
  the KL in closed form;
* IWAE: ``E[log (1/k) sum_j p(x, z_j) / q(z_j | x)]``, ``z_j ~ q``, which
  rises to ``log p(x)`` as ``k`` grows (Burda et al., 2016).

Training (:func:`pixelprob.train.train`) minimises :meth:`VAE.calc_likelihood`,
the negative ELBO in bits per dimension. In training mode it adds, when
``config.mask_training > 0``, the negative bound on ``log p(x_obs)`` of a
randomly masked copy of part of the batch, ``-(E_q(z|x_obs)[log p(x_obs|z)] -
KL)``, so that the encoder learns to read partly observed images; in eval mode
it is exactly the negative ELBO.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Optional, Sequence

import pyro
import pyro.distributions as dist
import torch
import torch.nn as nn
import torch.nn.functional as F

from ._checks import check_images, check_levels_shape

LIKELIHOODS = ("categorical", "bernoulli")
# Below this height or width the conv nets have nothing to downsample: use MLPs.
MIN_CONV_SIZE = 8
# Upper bound on floats in one chunk of decoder logits (about 200 MB), so that
# IWAE with thousands of samples never holds them all at once.
MAX_CHUNK_FLOATS = 5 * 10 ** 7


@dataclass
class VAEConfig:
    """Everything that defines a VAE's architecture.

    * ``hidden``: channels of the first conv layer (doubled after each
      downsampling; the fully connected layer between the conv stacks has
      ``4 * hidden`` units); width of the MLP layers for images smaller than
      8 pixels on a side;
    * ``latent_dim``: size of ``z``; the default 16 was chosen by a short
      measurement on MNIST (see ``weights/vae-mnist.md``);
    * ``mask_training``: fraction of each training batch also scored, as a
      randomly masked copy, by the bound on ``log p(x_obs)`` (0 disables).
    """

    levels: int = 256
    shape: Sequence[int] = (1, 28, 28)
    latent_dim: int = 16
    hidden: int = 32
    likelihood: str = "categorical"
    mask_training: float = 0.25

    def __post_init__(self):
        self.shape = tuple(int(s) for s in self.shape)
        validate_config(self)

    def to_dict(self):
        d = asdict(self)
        d["shape"] = list(self.shape)
        return d


def validate_config(cfg: VAEConfig) -> None:
    check_levels_shape(cfg.levels, cfg.shape)
    if not isinstance(cfg.latent_dim, int) or cfg.latent_dim < 1:
        raise ValueError(f"latent_dim must be a positive integer, got {cfg.latent_dim!r}")
    if not isinstance(cfg.hidden, int) or cfg.hidden < 1:
        raise ValueError(f"hidden must be a positive integer, got {cfg.hidden!r}")
    if cfg.likelihood not in LIKELIHOODS:
        raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {cfg.likelihood!r}")
    if cfg.likelihood == "bernoulli" and cfg.levels != 2:
        raise ValueError(f"likelihood='bernoulli' needs levels=2 (binary images), got levels={cfg.levels}; "
                         f"use likelihood='categorical' for {cfg.levels} levels")
    if not 0.0 <= float(cfg.mask_training) <= 1.0:
        raise ValueError(f"mask_training must be a fraction in [0, 1], got {cfg.mask_training!r}")


def _downsamplings(H, W):
    n = 0
    while min(H, W) >= MIN_CONV_SIZE:
        H, W = H // 2, W // 2
        n += 1
    return n


class Encoder(nn.Module):
    """``(x, mask) -> (mu, sigma)``; input channels are the zero-filled image and the mask."""

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        C, H, W = cfg.shape
        h, D = cfg.hidden, cfg.latent_dim
        self.conv = _downsamplings(H, W) > 0
        if self.conv:
            layers, ch, size = [nn.Conv2d(2 * C, h, 3, padding=1), nn.ELU()], h, (H, W)
            for _ in range(_downsamplings(H, W)):
                layers += [nn.Conv2d(ch, 2 * h, 4, stride=2, padding=1), nn.ELU()]
                ch, size = 2 * h, (size[0] // 2, size[1] // 2)
            self.body = nn.Sequential(*layers, nn.Flatten(), nn.Linear(ch * size[0] * size[1], 4 * h), nn.ELU())
            width = 4 * h
        else:
            self.body = nn.Sequential(nn.Flatten(), nn.Linear(2 * C * H * W, h), nn.ELU(), nn.Linear(h, h), nn.ELU())
            width = h
        self.out = nn.Linear(width, 2 * D)

    def forward(self, xf, mask):
        mu, s = self.out(self.body(torch.cat([xf * mask, mask], 1))).chunk(2, -1)
        return mu, F.softplus(s) + 1e-4


class Decoder(nn.Module):
    """``z -> logits`` of shape ``B x levels x C x H x W``."""

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        C, H, W = cfg.shape
        h, D, L = cfg.hidden, cfg.latent_dim, cfg.levels
        self.levels, self.shape = L, (C, H, W)
        self.per_pixel = 1 if cfg.likelihood == "bernoulli" else L
        out = C * self.per_pixel
        n = _downsamplings(H, W)
        self.conv = n > 0
        if self.conv:
            # sizes on the way down, so transposed convolutions can hit each one exactly
            self.sizes = [(H, W)]
            for _ in range(n):
                self.sizes.append((self.sizes[-1][0] // 2, self.sizes[-1][1] // 2))
            self.ch = 2 * h
            h0, w0 = self.sizes[-1]
            self.fc = nn.Sequential(nn.Linear(D, 4 * h), nn.ELU(), nn.Linear(4 * h, self.ch * h0 * w0), nn.ELU())
            self.ups = nn.ModuleList(
                [nn.ConvTranspose2d(self.ch, self.ch if i < n - 1 else h, 4, stride=2, padding=1) for i in range(n)])
            self.head = nn.Conv2d(h, out, 1)
        else:
            self.mlp = nn.Sequential(nn.Linear(D, h), nn.ELU(), nn.Linear(h, h), nn.ELU(), nn.Linear(h, out * H * W))

    def forward(self, z):
        C, H, W = self.shape
        B = z.shape[0]
        if self.conv:
            t = self.fc(z).view(B, self.ch, *self.sizes[-1])
            for up, size in zip(self.ups, reversed(self.sizes[:-1])):
                t = F.elu(up(t, output_size=size))
            t = self.head(t)
        else:
            t = self.mlp(z)
        t = t.view(B, C, self.per_pixel, H, W).transpose(1, 2)  # B x per_pixel x C x H x W
        if self.per_pixel == 1:  # Bernoulli(sigmoid(l)) is Categorical(logits=[0, l])
            t = torch.cat([torch.zeros_like(t), t], 1)
        return t


def random_masks(n, shape, generator=None, device=None):
    """Masks like the queries' evidence: raster prefixes, raster suffixes, and scattered pixels."""
    C, H, W = shape
    P = H * W
    pos = torch.arange(P, device=device).expand(n, P)
    cut = torch.randint(0, P + 1, (n, 1), generator=generator).to(device)
    kind = torch.randint(0, 3, (n, 1), generator=generator).to(device)
    keep = torch.rand(n, 1, generator=generator).to(device)
    scatter = torch.rand(n, P, generator=generator).to(device) < keep
    m = torch.where(kind == 0, pos < cut, torch.where(kind == 1, pos >= cut, scatter))
    return m.view(n, 1, H, W).expand(n, C, H, W)


class VAE(nn.Module):
    """Per-pixel categorical VAE: native densities and a Pyro ``model``/``guide`` pair."""

    kind = "vae"

    def __init__(self, config: Optional[VAEConfig] = None, **kwargs):
        super().__init__()
        if config is None:
            config = VAEConfig(**kwargs)
        elif kwargs:
            raise TypeError("pass either a VAEConfig or keyword arguments, not both")
        self.config = config
        self.levels = config.levels
        self.shape = tuple(config.shape)
        self.latent_dim = config.latent_dim
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        # Cost accounting (not state): images through the decoder. A VAE has no local re-evaluation.
        self.num_evals = 0
        self.num_local_evals = 0

    @property
    def device(self):
        return self.encoder.out.weight.device

    # -- inputs ---------------------------------------------------------------
    def check_images(self, x, name="x"):
        """Raise a clear error unless ``x`` is an integer batch of this model's images."""
        check_images(x, self.shape, self.levels, name)

    def _mask(self, mask, B):
        """``mask`` as a ``B x C x H x W`` float tensor (``None``: everything observed)."""
        if mask is None:
            return torch.ones((B,) + self.shape, device=self.device)
        mask = torch.as_tensor(mask, device=self.device)
        if mask.dtype != torch.bool:
            raise TypeError(f"mask must be a boolean tensor, got dtype {mask.dtype}")
        if tuple(mask.shape[-3:]) != self.shape or mask.dim() not in (3, 4):
            raise ValueError(f"mask must have shape {self.shape} or (batch, {', '.join(map(str, self.shape))}), "
                             f"got {tuple(mask.shape)}")
        return mask.expand((B,) + self.shape).float()

    def normalize(self, x):
        return x.float() * (2.0 / (self.levels - 1)) - 1.0

    # -- networks -------------------------------------------------------------
    def prior(self, batch_shape=()):
        """``p(z) = N(0, I)`` as a distribution with event shape ``(latent_dim,)``."""
        zeros = torch.zeros(tuple(batch_shape) + (self.latent_dim,), device=self.device)
        return dist.Normal(zeros, torch.ones_like(zeros)).to_event(1)

    def encode(self, x, mask=None):
        """``(mu, sigma)`` of ``q(z | x_obs)``, each ``B x latent_dim``.

        ``mask`` (``C x H x W`` or ``B x C x H x W`` bool) marks the observed
        pixels; the others are zero-filled and the mask is fed as extra
        channels. For a partly observed image the result approximates
        ``p(z | x_obs)``; it is not exact.
        """
        self.check_images(x)
        x = x.to(self.device)
        return self.encoder(self.normalize(x), self._mask(mask, x.shape[0]))

    def decode(self, z):
        """Per-pixel logits ``B x levels x C x H x W`` of ``p(x | z)`` for ``z`` of shape ``B x latent_dim``."""
        if z.dim() != 2 or z.shape[-1] != self.latent_dim:
            raise ValueError(f"z must have shape (batch, {self.latent_dim}), got {tuple(z.shape)}")
        self.num_evals += z.shape[0]
        return self.decoder(z.to(self.device))

    def chunk_size(self):
        """How many images to decode at once within :data:`MAX_CHUNK_FLOATS`."""
        return max(1, MAX_CHUNK_FLOATS // (self.levels * math.prod(self.shape)))

    def log_lik(self, x, z, mask=None):
        """``log p(x_obs | z)`` per row: ``x`` is ``N x C x H x W`` (or one image, broadcast), ``z`` is ``N x D``.

        Sums the per-pixel log probabilities over the pixels where ``mask`` is
        True (all pixels when ``mask`` is None).
        """
        logp = F.log_softmax(self.decode(z), dim=1)
        x = x.to(self.device).long().expand(z.shape[0], *self.shape)  # one image broadcasts
        lp = logp.gather(1, x.unsqueeze(1)).squeeze(1)
        if mask is not None:
            lp = lp * self._mask(mask, z.shape[0])
        return lp.flatten(1).sum(1)

    # -- bounds ---------------------------------------------------------------
    def elbo(self, x, mask=None):
        """Single-draw ELBO per image, in nats: ``log p(x_obs | z) - KL(q(z|x_obs) || N(0, I))``, ``z ~ q``.

        With ``mask`` it bounds ``log p(x_obs)``, the probability of the observed pixels.
        """
        self.check_images(x)
        x = x.to(self.device)
        mu, sigma = self.encode(x, mask)
        z = mu + sigma * torch.randn_like(mu)
        kl = 0.5 * (mu ** 2 + sigma ** 2 - 1.0).sum(-1) - sigma.log().sum(-1)
        return self.log_lik(x, z, mask) - kl

    def _dims(self):
        return math.prod(self.shape)

    def calc_likelihood(self, x):
        """Mean negative ELBO in bits per dimension (training adds the masked-copy term, see the module doc)."""
        loss = -self.elbo(x).mean()
        frac = float(self.config.mask_training)
        if self.training and frac > 0:
            n = max(1, int(round(frac * x.shape[0])))
            m = random_masks(n, self.shape, device=self.device)
            loss = loss - self.elbo(x[:n], m).mean()
        return loss * math.log2(math.e) / self._dims()

    @torch.no_grad()
    def iwae_bound(self, x, k, mask=None, chunk=None, generator=None):
        """IWAE bound per image, in nats: ``log (1/k) sum_j p(x_obs|z_j) p(z_j) / q(z_j|x_obs)``, ``z_j ~ q``.

        The ``k x B`` draws are decoded in chunks (at most :meth:`chunk_size`
        images at once) with a running log-sum-exp, so ``k`` in the thousands
        fits in memory. ``k = 1`` is the ELBO estimator with the sampled KL.
        """
        self.check_images(x)
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive integer number of importance samples, got {k!r}")
        x = x.to(self.device)
        B = x.shape[0]
        mu, sigma = self.encode(x, mask)
        q = dist.Normal(mu, sigma).to_event(1)
        m = None if mask is None else self._mask(mask, B).bool()
        per = max(1, (chunk or self.chunk_size()) // B)  # draws per image in one chunk
        dev = self.device if generator is None else generator.device
        total = torch.full((B,), -math.inf, device=self.device)
        for j in range(0, k, per):
            n = min(per, k - j)
            z = mu + sigma * torch.randn(n, B, self.latent_dim, generator=generator, device=dev).to(self.device)
            ll = self.log_lik(x.repeat(n, 1, 1, 1), z.reshape(n * B, -1),
                              None if m is None else m.repeat(n, 1, 1, 1)).view(n, B)
            lw = ll + self.prior().log_prob(z) - q.log_prob(z)
            total = torch.logaddexp(total, torch.logsumexp(lw, 0))
        return total - math.log(k)

    def log_prob(self, x, k=1000, mask=None):
        """``log p(x)`` (or ``log p(x_obs)``) per image, estimated by the IWAE bound with ``k`` samples (a lower bound on average)."""
        return self.iwae_bound(x, k, mask=mask)

    # -- sampling -------------------------------------------------------------
    @torch.no_grad()
    def sample(self, n, generator=None):
        """``n`` images from ``p(x) = int p(x|z) p(z) dz``: ``z ~ N(0, I)``, then every pixel independently."""
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive number of images, got {n!r}")
        dev = self.device if generator is None else generator.device
        z = torch.randn(n, self.latent_dim, generator=generator, device=dev).to(self.device)
        out = []
        for i in range(0, n, self.chunk_size()):
            probs = torch.softmax(self.decode(z[i: i + self.chunk_size()]), 1)
            u = torch.rand((probs.shape[0],) + self.shape, generator=generator, device=dev).to(self.device)
            out.append((probs.cumsum(1) < u.unsqueeze(1)).sum(1).clamp_(max=self.levels - 1))
        return torch.cat(out).long()

    # -- Pyro -----------------------------------------------------------------
    def _pixel_dist(self, logits, mask):
        d = dist.Categorical(logits=logits.movedim(-4, -1))  # batch (...) x B x C x H x W
        if mask is not None:
            d = d.mask(self._mask(mask, logits.shape[-5]).bool())
        return d.to_event(3)

    def model(self, x=None, mask=None, batch_size=None):
        """Pyro model: ``z ~ N(0, I)``, ``pixels ~ Categorical(decode(z))``, observed where ``mask``.

        Sites ``"z"`` (``B x D``) and ``"pixels"`` (``B x C x H x W``) in the
        plate ``"images"``. With ``mask`` the pixel site is masked with
        ``.mask(mask)`` before ``.to_event(3)``, so its log density is the sum
        over the observed pixels only, ``log p(x_obs | z)`` (the hidden pixels'
        values are never read). Registers the decoder with ``pyro.module``.
        """
        pyro.module("vae_decoder", self.decoder)
        if x is not None:
            self.check_images(x)
        return self.program(x, mask, batch_size)

    def program(self, x=None, mask=None, batch_size=None):
        """:meth:`model` without ``pyro.module`` and input checks.

        The query methods condition on checked evidence and must never let an
        optimiser see the network, and NUTS evaluates this thousands of times.
        """
        if x is not None:
            x = x.to(self.device).long()
        B = x.shape[0] if x is not None else (batch_size or 1)
        with pyro.plate("images", B, dim=-1):
            z = pyro.sample("z", self.prior((B,)))
            # z may carry extra leading dims (vectorised particles): decode them flat
            logits = self.decode(z.reshape(-1, self.latent_dim)).view(*z.shape[:-1], self.levels, *self.shape)
            return pyro.sample("pixels", self._pixel_dist(logits, mask), obs=x)

    def guide(self, x, mask=None, batch_size=None):
        """Pyro guide: ``z ~ N(mu, sigma)`` from the encoder on the (masked) image. Registers the encoder."""
        pyro.module("vae_encoder", self.encoder)
        mu, sigma = self.encode(x, mask)
        with pyro.plate("images", x.shape[0], dim=-1):
            return pyro.sample("z", dist.Normal(mu, sigma).to_event(1))
