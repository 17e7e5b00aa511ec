"""PixelCNN with a vertical and a horizontal stack (van den Oord et al., 2016).

The model factorises an image in raster order,

    p(x) = prod_i p(x_i | x_<i),

where ``i`` runs over pixels row by row. Within one pixel the ``C`` channels are
conditionally independent given the past pixels, so
``p(x_i | x_<i) = prod_k p(x_ik | x_<i)``: a valid joint for any ``C`` and, for
MNIST (``C = 1``), exactly the usual chain rule.

The vertical stack sees every row above the current one, the horizontal stack
sees the pixels to the left in the current row, and the horizontal stack is fed
the vertical one, so the receptive field has no blind spot.

Every masked convolution is stored with its full ``k x k`` weight and a mask,
but it is *computed* on the bounding box of the mask only, with asymmetric
padding: the masked-out half of the kernel is never multiplied (a plain speed-up
that also lets :mod:`pixelprob.models.fast` evaluate exact windows of the
network).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import List, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ._checks import check_images, check_levels_shape

ILLEGAL_VARIANTS = ("center", "below")


@dataclass
class PixelCNNConfig:
    """Everything that defines a PixelCNN's architecture.

    ``illegal`` builds a deliberately non-causal network for the masking
    experiment: ``"center"`` lets the first layer see the pixel it predicts,
    ``"below"`` lets the vertical stack see the row below.
    """

    levels: int = 256
    shape: Sequence[int] = (1, 28, 28)
    channels: int = 32
    layers: int = 5
    kernel_size: int = 3
    dilations: Optional[Sequence[int]] = None
    gated: bool = False
    out_hidden: Optional[int] = None
    illegal: Optional[str] = None

    def __post_init__(self):
        self.shape = tuple(int(s) for s in self.shape)
        if self.dilations is not None:
            self.dilations = [int(d) for d in self.dilations]
        validate_config(self)

    def to_dict(self):
        d = asdict(self)
        d["shape"] = list(self.shape)
        return d


def validate_config(cfg: PixelCNNConfig) -> None:
    check_levels_shape(cfg.levels, cfg.shape)
    if cfg.channels < 1 or cfg.layers < 0:
        raise ValueError(f"channels must be >= 1 and layers >= 0, got channels={cfg.channels}, layers={cfg.layers}")
    if cfg.kernel_size < 1 or cfg.kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be a positive odd integer, got {cfg.kernel_size}")
    if cfg.dilations is not None:
        if len(cfg.dilations) != cfg.layers or min(cfg.dilations, default=1) < 1:
            raise ValueError(
                f"dilations must list one positive integer per layer ({cfg.layers}), got {cfg.dilations!r}")
    if cfg.illegal is not None and cfg.illegal not in ILLEGAL_VARIANTS:
        raise ValueError(f"illegal must be None or one of {ILLEGAL_VARIANTS}, got {cfg.illegal!r}")


class MaskedConv2d(nn.Module):
    """A convolution whose kernel is multiplied by a fixed 0/1 mask.

    Only the bounding box of the mask is convolved; ``pads`` holds the
    (left, right, top, bottom) padding that makes the output the same size as
    the input, and ``forward_valid`` convolves an already padded window.
    """

    def __init__(self, c_in, c_out, mask: torch.Tensor, dilation: int = 1):
        super().__init__()
        kh, kw = mask.shape
        self.dilation = dilation
        rows = torch.nonzero(mask.any(1)).flatten()
        cols = torch.nonzero(mask.any(0)).flatten()
        r0, r1, c0, c1 = int(rows.min()), int(rows.max()), int(cols.min()), int(cols.max())
        self.box = (r0, r1 + 1, c0, c1 + 1)
        cr, cc = kh // 2, kw // 2
        # Offsets, in pixels, of the first and last input row/column relative to the output.
        self.reach = ((r0 - cr) * dilation, (r1 - cr) * dilation, (c0 - cc) * dilation, (c1 - cc) * dilation)
        top, bottom, left, right = -self.reach[0], self.reach[1], -self.reach[2], self.reach[3]
        # A kernel that only looks strictly above the output still needs the output grid aligned.
        self.pads = (max(left, 0), max(right, 0), max(top, 0), max(bottom, 0))
        self.crop = (max(-left, 0), max(-right, 0), max(-top, 0), max(-bottom, 0))
        self.weight = nn.Parameter(torch.empty(c_out, c_in, kh, kw))
        self.bias = nn.Parameter(torch.zeros(c_out))
        self.register_buffer("mask", mask.float().clone(), persistent=False)
        n_in = c_in * int(mask.sum())
        nn.init.uniform_(self.weight, -1 / math.sqrt(n_in), 1 / math.sqrt(n_in))
        nn.init.uniform_(self.bias, -1 / math.sqrt(n_in), 1 / math.sqrt(n_in))

    def cropped_weight(self):
        r0, r1, c0, c1 = self.box
        return (self.weight * self.mask)[:, :, r0:r1, c0:c1]

    def forward_valid(self, x_padded):
        return F.conv2d(x_padded, self.cropped_weight(), self.bias, dilation=self.dilation)

    def forward(self, x):
        out = self.forward_valid(F.pad(x, self.pads))
        cl, cr, ct, cb = self.crop
        if any(self.crop):
            out = out[..., ct: out.shape[-2] - cb, cl: out.shape[-1] - cr]
        return out


def vertical_mask(k, first, illegal=None):
    """Rows above the centre (and the centre row unless ``first``)."""
    m = torch.zeros(k, k)
    m[: k // 2] = 1
    if not first:
        m[k // 2] = 1
    if illegal == "below":
        m[k // 2 + 1: k // 2 + 2] = 1
    return m


def horizontal_mask(k, first, illegal=None):
    """Pixels left of the centre in the same row (and the centre unless ``first``)."""
    m = torch.zeros(1, k)
    m[0, : k // 2] = 1
    if not first or illegal == "center":
        m[0, k // 2] = 1
    return m


class StackLayer(nn.Module):
    """One layer of the two stacks.

    ``v' = act(Wv * v)``, ``h' = h + W1 act(Wh * h + Wvh (Wv * v))``, where
    ``act`` is ELU or, when gated, ``tanh(a) * sigmoid(b)``.
    """

    def __init__(self, ch, k, dilation, gated, illegal=None):
        super().__init__()
        mult = 2 if gated else 1
        self.gated = gated
        self.v_conv = MaskedConv2d(ch, mult * ch, vertical_mask(k, False, illegal), dilation)
        self.h_conv = MaskedConv2d(ch, mult * ch, horizontal_mask(k, False), dilation)
        self.v_to_h = nn.Conv2d(mult * ch, mult * ch, 1)
        self.h_out = nn.Conv2d(ch, ch, 1)

    def act(self, t):
        if self.gated:
            a, b = t.chunk(2, dim=1)
            return torch.tanh(a) * torch.sigmoid(b)
        return F.elu(t)

    def combine(self, v_feat, h_conv, h):
        """Everything after the two masked convolutions (pointwise in space)."""
        h_feat = h_conv + self.v_to_h(v_feat)
        return self.act(v_feat), h + self.h_out(self.act(h_feat))

    def forward(self, v, h):
        return self.combine(self.v_conv(v), self.h_conv(h), h)


class PixelCNN(nn.Module):
    """Autoregressive image model over ``levels`` integer values per pixel.

    ``forward(x)`` takes integers in ``0..levels-1`` of shape ``B x C x H x W``
    and returns logits of shape ``B x levels x C x H x W``; the logits at pixel
    ``i`` depend only on pixels before ``i`` in raster order (unless the model
    was built ``illegal``).
    """

    kind = "pixelcnn"

    def __init__(self, config: Optional[PixelCNNConfig] = None, **kwargs):
        super().__init__()
        if config is None:
            config = PixelCNNConfig(**kwargs)
        elif kwargs:
            raise TypeError("pass either a PixelCNNConfig or keyword arguments, not both")
        self.config = config
        C, H, W = config.shape
        ch, k = config.channels, config.kernel_size
        self.levels = config.levels
        self.shape = (C, H, W)
        dil = config.dilations or [1] * config.layers
        self.v_in = MaskedConv2d(C, ch, vertical_mask(k, True, config.illegal))
        self.h_in = MaskedConv2d(C, ch, horizontal_mask(k, True, config.illegal))
        self.layers = nn.ModuleList(
            [StackLayer(ch, k, d, config.gated, config.illegal) for d in dil])
        hid = config.out_hidden or ch
        self.out1 = nn.Conv2d(ch, hid, 1)
        self.out2 = nn.Conv2d(hid, C * config.levels, 1)
        # Cost accounting (not state): images through a full forward pass, and
        # candidate values through a local re-evaluation (models/fast.py).
        self.num_evals = 0
        self.num_local_evals = 0

    # -- inputs ---------------------------------------------------------------
    def check_images(self, x, name="x"):
        """Raise a clear error unless ``x`` is an integer batch of this model's images."""
        check_images(x, self.shape, self.levels, name)

    def normalize(self, x):
        return x.float() * (2.0 / (self.levels - 1)) - 1.0

    # -- network --------------------------------------------------------------
    def head(self, h):
        return self.out2(F.elu(self.out1(F.elu(h))))

    def forward_float(self, xf):
        self.num_evals += xf.shape[0]
        v, h = self.v_in(xf), self.h_in(xf)
        for layer in self.layers:
            v, h = layer(v, h)
        out = self.head(h)
        B, _, H, W = out.shape
        return out.view(B, self.levels, self.shape[0], H, W)

    def forward(self, x):
        return self.forward_float(self.normalize(x.to(self.out2.weight.device)))

    # -- densities ------------------------------------------------------------
    def log_prob(self, x):
        """log p(x) in nats, one value per image (shape ``B``)."""
        self.check_images(x)
        logp = F.log_softmax(self(x), dim=1)
        return logp.gather(1, x.long().unsqueeze(1)).squeeze(1).flatten(1).sum(1)

    def calc_likelihood(self, x):
        """Mean bits per dimension: ``-log p(x) * log2(e) / (C*H*W)``, averaged over the batch."""
        return -self.log_prob(x).mean() * math.log2(math.e) / math.prod(self.shape)

    # -- sampling -------------------------------------------------------------
    @torch.no_grad()
    def sample(self, n=None, given=None, mask=None, generator=None, noise=None, cached=True, upto=None):
        """Ancestral sampling, keeping the pixels ``mask`` of ``given`` fixed.

        Pixels are visited in raster order; each free pixel is drawn from
        ``p(x_i | x_<i)`` by inverting its CDF at a uniform ``noise`` value
        (drawn up front, shape ``B x C x H x W``, so that every sampler gives
        the same image for the same seed).

        When the given pixels form a raster-order prefix this is an exact draw
        from ``p(x_free | x_given)``. Otherwise it is *not* the conditional:
        the free pixels ignore the given pixels that come after them, so it is
        only a proposal (the one likelihood weighting corrects).

        ``cached=True`` uses the activation cache of
        :mod:`pixelprob.models.fast`; ``cached=False`` is the textbook loop
        with one full forward pass per pixel.

        ``upto`` stops before raster position ``upto``: later free pixels are
        left at 0 (enough when only earlier pixels are needed).
        """
        device = self.out2.weight.device
        if given is not None:
            self.check_images(given, "given")
            given = given.to(device)
            n = given.shape[0] if n is None else n
            if given.shape[0] != n:
                raise ValueError(f"given has {given.shape[0]} images but n={n}")
        if n is None or n < 1:
            raise ValueError(f"n must be a positive number of images, got {n!r}")
        shape = (n,) + self.shape
        if mask is None:
            mask = torch.zeros(shape, dtype=torch.bool, device=device)
        else:
            if given is None:
                raise ValueError("mask needs given images to take the fixed pixels from")
            mask = torch.as_tensor(mask, device=device).bool().expand(shape)
        x = torch.zeros(shape, dtype=torch.long, device=device)
        if given is not None:
            x = torch.where(mask, given.long(), x)
        if noise is None:
            noise = torch.rand(shape, generator=generator, device=device if generator is None else generator.device).to(device)
        if cached and self.config.illegal is None:
            from .fast import cached_sample
            return cached_sample(self, x, mask, noise, upto)
        return naive_sample(self, x, mask, noise, upto)


def inverse_cdf(logits, u):
    """Draw from softmax(logits) along dim 1 by inverting the CDF at ``u``."""
    cdf = torch.softmax(logits, dim=1).cumsum(1)
    idx = (cdf < u.unsqueeze(1)).sum(1)
    return idx.clamp_(max=logits.shape[1] - 1)


def naive_sample(model, x, mask, noise, upto=None):
    """The textbook loop: one full forward pass per pixel."""
    _, H, W = model.shape
    upto = H * W if upto is None else upto
    for r in range(H):
        for c in range(W):
            if r * W + c >= upto:
                return x
            logits = model(x)[:, :, :, r, c]
            draw = inverse_cdf(logits, noise[:, :, r, c])
            x[:, :, r, c] = torch.where(mask[:, :, r, c], x[:, :, r, c], draw)
    return x
