"""Learned guides ``q(hidden | observed)`` for PixelCNN queries, and their training.

A guide is itself a small PixelCNN over the *hidden* pixels,

    q(x_H | x_O) = prod_{i in H, raster order} q(x_i | x_<i, x_O),

whose causal stacks read the image in raster order (hidden pixels drawn so far
and observed pixels before ``i``) and whose every layer also receives
*conditioning* features: a non-causal (ordinary, dilated) convolutional
summary of the observed pixels, their mask and the pixel coordinates. The
conditioning is a function of ``x_O`` only, so adding it anywhere keeps each
``q(x_i | .)`` a function of ``x_<i`` and ``x_O``, and the product above is a
normalised distribution over ``x_H`` (ancestral sampling over the hidden
pixels, observed pixels clamped).

A guide is trained for one PixelCNN and one *evidence pattern* (the observed
mask; the hidden pixels are its complement). It carries the model's
fingerprint (a hash of the config and of per-tensor weight sums) and the
pattern, and :meth:`AutoregressiveGuide.check` refuses any other model or
pattern.

Training (:func:`train_guide`) is *inference compilation*: Pyro's
:class:`~pyro.infer.CSIS` maximises ``E_{p(x)}[log q(x_H | x_O)]`` over exact
joint draws ``x ~ p`` (the PixelCNN's cached ancestral sampler), i.e. it
minimises ``E_{p(x_O)} KL(p(x_H | x_O) || q(x_H | x_O))``. That forward KL
makes the guide cover the posterior's mass, which is what importance sampling
(:mod:`pixelprob.infer.svi`) needs. Optionally the first steps use real MNIST
images instead of model draws (a warm start: cheaper data, similar images).

Command line::

    python -m pixelprob.infer.guides --model pixelcnn-mnist --pattern top_half \\
        --minutes 20 --out pixelprob/weights/guide-pixelcnn-mnist-top_half.pt
"""
from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.distributions import constraints

from ..models.fast import _conv_window
from ..models.pixelcnn import MaskedConv2d, StackLayer, horizontal_mask, vertical_mask
from ..regions import as_region

# Named evidence patterns: pattern name -> observed region. The hidden pixels
# are the complement, so "top_half" hides the top half *and* the middle pixel.
PATTERNS = {"top_half": "bottom_half"}


# --------------------------------------------------------------------------------------
# Identity of a model and of an evidence pattern
# --------------------------------------------------------------------------------------


def model_fingerprint(model) -> str:
    """A short hash of ``model``'s architecture and weights.

    The weights enter through per-tensor sums (in float64 on the CPU, printed
    to 7 significant digits), so the same checkpoint gives the same
    fingerprint on any device while a retrained model does not.
    """
    h = hashlib.sha256(json.dumps(model.config.to_dict(), sort_keys=True).encode())
    for name, p in sorted(model.state_dict().items()):
        t = p.detach().double().cpu()
        h.update(f"{name}:{float(t.sum()):.7e}:{float(t.abs().sum()):.7e};".encode())
    return h.hexdigest()[:16]


def pattern_name(observed, hidden_name=None):
    """``"hidden|observed"`` for a named observed region, else a hash of the mask."""
    if isinstance(observed, str):
        obs_name = observed
    else:
        m = torch.as_tensor(observed).bool().cpu()
        obs_name = "mask-" + hashlib.sha256(m.numpy().tobytes() + str(tuple(m.shape)).encode()).hexdigest()[:10]
    return f"{hidden_name or '~' + obs_name}|{obs_name}"


def resolve_pattern(pattern, shape):
    """``(name, observed mask)`` from a pattern name (``"top_half"``), a region name or a mask."""
    if isinstance(pattern, str) and pattern in PATTERNS:
        obs = PATTERNS[pattern]
        return f"{pattern}|{obs}", as_region(obs).mask(shape)
    if isinstance(pattern, str):
        try:
            mask = as_region(pattern).mask(shape)
        except ValueError:
            raise ValueError(f"unknown evidence pattern {pattern!r}; named patterns (hidden pixels): "
                             f"{sorted(PATTERNS)}, or give the observed region's name or a boolean mask") from None
        return pattern_name(pattern), mask
    mask = torch.as_tensor(pattern).bool()
    if mask.dim() == 2:
        mask = mask.unsqueeze(0)
    if tuple(mask.shape) != tuple(shape):
        raise ValueError(f"an observed mask must have the image shape {tuple(shape)}, got {tuple(mask.shape)}")
    return pattern_name(mask), mask


# --------------------------------------------------------------------------------------
# The guide network
# --------------------------------------------------------------------------------------


@dataclass
class GuideConfig:
    """Architecture of an :class:`AutoregressiveGuide`."""

    levels: int
    shape: Sequence[int]
    channels: int = 32
    layers: int = 4
    kernel_size: int = 3
    gated: bool = False
    cond_channels: int = 32
    cond_dilations: List[int] = field(default_factory=lambda: [1, 2, 4, 8, 1])

    def __post_init__(self):
        self.shape = tuple(int(s) for s in self.shape)
        self.cond_dilations = [int(d) for d in self.cond_dilations]

    def to_dict(self):
        d = asdict(self)
        d["shape"] = list(self.shape)
        return d


class AutoregressiveGuide(nn.Module):
    """``q(x_H | x_O)``: a conditional PixelCNN over the hidden pixels of one evidence pattern.

    * :meth:`log_q` scores full images (hidden pixels filled in) by teacher
      forcing: one forward pass, ``sum_{i in H} log q(x_i | x_<i, x_O)``;
    * :meth:`sample` draws the hidden pixels ancestrally, with an activation
      cache (one column per layer per pixel, stopping at the last hidden
      pixel), and returns their log q as well.
    """

    kind = "guide"

    def __init__(self, config: GuideConfig, observed_mask, pattern: str = "", fingerprint: str = "",
                 meta: Optional[dict] = None):
        super().__init__()
        self.config = config
        C, H, W = config.shape
        observed_mask = torch.as_tensor(observed_mask).bool()
        if tuple(observed_mask.shape) != (C, H, W):
            raise ValueError(f"observed_mask must have shape {(C, H, W)}, got {tuple(observed_mask.shape)}")
        if observed_mask.all():
            raise ValueError("a guide needs at least one hidden pixel; this pattern observes every pixel")
        self.register_buffer("observed_mask", observed_mask.clone())
        self.pattern = pattern
        self.fingerprint = fingerprint
        self.meta = dict(meta or {})
        self.levels = config.levels
        self.shape = (C, H, W)
        ch, k, mult = config.channels, config.kernel_size, 2 if config.gated else 1
        self.v_in = MaskedConv2d(C, ch, vertical_mask(k, True))
        self.h_in = MaskedConv2d(C, ch, horizontal_mask(k, True))
        self.layers = nn.ModuleList([StackLayer(ch, k, 1, config.gated) for _ in range(config.layers)])
        self.out1 = nn.Conv2d(ch, ch, 1)
        self.out2 = nn.Conv2d(ch, C * config.levels, 1)
        # start from the uniform guide: a safe (if poor) proposal before any training
        nn.init.zeros_(self.out2.weight)
        nn.init.zeros_(self.out2.bias)
        cc = config.cond_channels
        convs, c_in = [], 2 * C + 2  # observed values, observed mask, row and column coordinates
        for d in config.cond_dilations:
            convs.append(nn.Conv2d(c_in, cc, 3, padding=d, dilation=d))
            c_in = cc
        self.cond_convs = nn.ModuleList(convs)
        # per-layer projections of the conditioning features onto the vertical and horizontal stacks
        self.cond_proj = nn.ModuleList([nn.Conv2d(cc, 2 * ch, 1)] +
                                       [nn.Conv2d(cc, 2 * mult * ch, 1) for _ in range(config.layers)])
        hid = self.hidden_mask
        pos = torch.nonzero(hid.any(0).flatten()).flatten()
        self.last_hidden = int(pos.max())

    # -- bookkeeping ----------------------------------------------------------
    @property
    def hidden_mask(self):
        return ~self.observed_mask

    @property
    def num_hidden(self):
        return int(self.hidden_mask.sum())

    def check(self, model, observed=None):
        """Raise ``ValueError`` unless this guide was trained for ``model`` and evidence ``observed``."""
        fp = model_fingerprint(model)
        if fp != self.fingerprint:
            raise ValueError(
                f"this guide was trained for another model (fingerprint {self.fingerprint}, pattern "
                f"{self.pattern!r}); the query's model has fingerprint {fp}. Train a guide for it with "
                f"pixelprob.infer.guides.train_guide(model, ...) or omit guide= to fit one per query")
        if tuple(model.shape) != self.shape or model.levels != self.levels:
            raise ValueError(f"this guide is for {self.shape} images with {self.levels} levels, the model has "
                             f"{tuple(model.shape)} and {model.levels}")
        if observed is not None:
            observed = torch.as_tensor(observed).bool().to(self.observed_mask.device)
            if tuple(observed.shape) != self.shape or not torch.equal(observed, self.observed_mask):
                n_obs = int(observed.sum()) if tuple(observed.shape) == self.shape else "?"
                raise ValueError(
                    f"this guide was trained for the evidence pattern {self.pattern!r} "
                    f"({int(self.observed_mask.sum())} observed pixels), but the query observes a different "
                    f"set of pixels ({n_obs} observed, pattern {pattern_name(observed)!r}); a guide only "
                    f"answers queries whose observed pixels are exactly its pattern's")

    # -- network --------------------------------------------------------------
    def _normalize(self, x):
        return x.float() * (2.0 / (self.levels - 1)) - 1.0

    def condition(self, images):
        """Per-layer conditioning ``[(cv, chh), ...]`` from the observed pixels of ``images``."""
        B = images.shape[0]
        _, H, W = self.shape
        m = self.observed_mask.float().expand(B, *self.shape)
        dev = m.device
        rows = torch.linspace(-1, 1, H, device=dev).view(1, 1, H, 1).expand(B, 1, H, W)
        cols = torch.linspace(-1, 1, W, device=dev).view(1, 1, 1, W).expand(B, 1, H, W)
        f = torch.cat([self._normalize(images) * m, m, rows, cols], 1)
        for conv in self.cond_convs:
            f = F.elu(conv(f))
        return [p(f).chunk(2, dim=1) for p in self.cond_proj]

    def _head(self, h):
        return self.out2(F.elu(self.out1(F.elu(h))))

    def forward(self, x):
        """Logits ``B x levels x C x H x W`` of ``q(x_i | x_<i, x_O)`` at every position."""
        cond = self.condition(x)
        xf = self._normalize(x)
        v = self.v_in(xf) + cond[0][0]
        h = self.h_in(xf) + cond[0][1]
        for layer, (cv, chh) in zip(self.layers, cond[1:]):
            v, h = layer.combine(layer.v_conv(v) + cv, layer.h_conv(h) + chh, h)
        out = self._head(h)
        B, _, H, W = out.shape
        return out.view(B, self.levels, self.shape[0], H, W)

    def log_q_pixels(self, x):
        """``log q(x_i | x_<i, x_O)`` per position (``B x C x H x W``, zero at observed pixels)."""
        x = x.long().to(self.observed_mask.device)
        lp = F.log_softmax(self(x), 1).gather(1, x.unsqueeze(1)).squeeze(1)
        return lp * self.hidden_mask

    def log_q(self, x):
        """``log q(x_H | x_O)`` for full images ``x`` (``B``)."""
        return self.log_q_pixels(x).flatten(1).sum(1)

    @torch.no_grad()
    def sample(self, images, generator=None):
        """Hidden pixels drawn from ``q`` given the observed pixels of ``images``.

        Returns ``(x, log_q_pixels)``: full images with the hidden pixels drawn
        and observed pixels kept, and ``log q(x_i | .)`` per position.
        """
        dev = self.observed_mask.device
        x = images.long().to(dev).clone()
        B = x.shape[0]
        C, H, W = self.shape
        hid = self.hidden_mask
        x = torch.where(hid, torch.zeros_like(x), x)
        cond = self.condition(x)
        xf = self._normalize(x)
        ch = self.config.channels
        n = len(self.layers)
        v = [torch.zeros(B, ch, H, W, device=dev) for _ in range(n + 1)]
        h = [torch.zeros(B, ch, H, W, device=dev) for _ in range(n + 1)]
        vf = [None] + [torch.zeros(B, layer.v_conv.weight.shape[0], H, W, device=dev) for layer in self.layers]
        logq = torch.zeros(B, C, H, W, device=dev)
        scale = 2.0 / (self.levels - 1)
        last_r, last_c = divmod(self.last_hidden, W)
        for r in range(last_r + 1):
            rs = slice(r, r + 1)
            v[0][:, :, rs] = _conv_window(self.v_in, xf, r, r + 1, 0, W) + cond[0][0][:, :, rs]
            for l, layer in enumerate(self.layers, 1):
                vf[l][:, :, rs] = _conv_window(layer.v_conv, v[l - 1], r, r + 1, 0, W) + cond[l][0][:, :, rs]
                v[l][:, :, rs] = layer.act(vf[l][:, :, rs])
            for c in range(W if r < last_r else last_c + 1):
                cs = slice(c, c + 1)
                h[0][:, :, rs, cs] = _conv_window(self.h_in, xf, r, r + 1, c, c + 1) + cond[0][1][:, :, rs, cs]
                for l, layer in enumerate(self.layers, 1):
                    hc = _conv_window(layer.h_conv, h[l - 1], r, r + 1, c, c + 1) + cond[l][1][:, :, rs, cs]
                    h_feat = hc + layer.v_to_h(vf[l][:, :, rs, cs])
                    h[l][:, :, rs, cs] = h[l - 1][:, :, rs, cs] + layer.h_out(layer.act(h_feat))
                here = hid[:, r, c]
                if not bool(here.any()):
                    continue
                logits = self._head(h[n][:, :, rs, cs]).view(B, self.levels, C)
                lp = F.log_softmax(logits, 1)
                draw = torch.multinomial(lp.exp().permute(0, 2, 1).reshape(B * C, self.levels), 1,
                                         generator=generator).view(B, C)
                x[:, :, r, c] = torch.where(here, draw, x[:, :, r, c])
                logq[:, :, r, c] = torch.where(here, lp.gather(1, draw.unsqueeze(1)).squeeze(1),
                                               torch.zeros_like(logq[:, :, r, c]))
                xf[:, :, r, c] = x[:, :, r, c].float() * scale - 1.0
        return x, logq

    # -- persistence ----------------------------------------------------------
    def checkpoint_dict(self):
        return {"kind": "guide", "config": self.config.to_dict(),
                "state_dict": {k: v.detach().cpu() for k, v in self.state_dict().items()},
                "observed_mask": self.observed_mask.cpu(), "pattern": self.pattern,
                "fingerprint": self.fingerprint, "meta": dict(self.meta)}

    def save(self, path):
        torch.save(self.checkpoint_dict(), path)

    @classmethod
    def load(cls, path, device="cpu"):
        """A guide from ``path`` (loaded with ``torch.load(..., weights_only=True)``)."""
        ck = torch.load(path, map_location="cpu", weights_only=True)
        if ck.get("kind") != "guide":
            raise ValueError(f"{path} is not a guide checkpoint (kind={ck.get('kind')!r})")
        g = cls(GuideConfig(**ck["config"]), ck["observed_mask"], ck["pattern"], ck["fingerprint"], ck["meta"])
        g.load_state_dict(ck["state_dict"])
        return g.to(device).eval()


def new_guide(model, pattern="top_half", **arch):
    """An untrained guide for ``model`` and ``pattern`` (see :func:`resolve_pattern`)."""
    name, mask = resolve_pattern(pattern, model.shape)
    cfg = GuideConfig(levels=model.levels, shape=model.shape, **arch)
    dev = next(model.parameters()).device
    return AutoregressiveGuide(cfg, mask, name, model_fingerprint(model)).to(dev)


# --------------------------------------------------------------------------------------
# The guide as a Pyro distribution over the site "hidden"
# --------------------------------------------------------------------------------------


class GuideDistribution(dist.TorchDistribution):
    """``q(hidden | observed)`` as a distribution over the hidden-pixel vector.

    The event is the ``n_hidden`` hidden levels in raster order (the layout of
    the ``"hidden"`` site of :func:`pixelprob.distributions.pixelcnn_query_program`);
    the batch lines up with ``images`` (``N x C x H x W``), possibly behind
    leading particle dimensions. ``log_prob`` is differentiable in the guide's
    weights; ``sample`` is not (a score-function guide).
    """

    arg_constraints = {}
    has_rsample = False

    def __init__(self, guide, images, batch_shape=None, validate_args=None):
        self.guide = guide
        self.images = images
        batch_shape = torch.Size([images.shape[0]]) if batch_shape is None else torch.Size(batch_shape)
        super().__init__(batch_shape, torch.Size([guide.num_hidden]), validate_args=False)

    @property
    def support(self):
        return constraints.integer_interval(0, self.guide.levels - 1)

    def expand(self, batch_shape, _instance=None):
        return GuideDistribution(self.guide, self.images, batch_shape)

    def _tiled(self, lead):
        reps = math.prod(lead) // self.images.shape[0]
        return self.images.repeat(reps, 1, 1, 1)

    def sample(self, sample_shape=torch.Size()):
        lead = torch.Size(sample_shape) + self.batch_shape
        x, _ = self.guide.sample(self._tiled(lead))
        return x[:, self.guide.hidden_mask].view(lead + self.event_shape)

    def log_prob(self, value):
        lead = value.shape[:-1]
        x = self._tiled(lead).clone()
        x[:, self.guide.hidden_mask] = value.reshape(-1, value.shape[-1]).long()
        return self.guide.log_q(x).view(lead)


# --------------------------------------------------------------------------------------
# Training by inference compilation (CSIS)
# --------------------------------------------------------------------------------------


def _csis_model(draw, guide, observations=None):
    """Joint program: exact draws ``x ~ p`` split into the sites ``hidden`` and ``observed``.

    The draws come from ``draw()`` (the PixelCNN's ancestral sampler, or a
    data batch for the warm start); CSIS only ever scores the *guide* at them,
    so the sites carry the draws as point masses.
    """
    x = draw()
    hid, obs = guide.hidden_mask, guide.observed_mask
    with pyro.plate("images", x.shape[0]):
        pyro.sample("hidden", dist.Delta(x[:, hid].float(), event_dim=1))
        # obs= marks the site observed, so CSIS hands its value to the guide as evidence
        pyro.sample("observed", dist.Delta(x[:, obs].float(), event_dim=1), obs=x[:, obs].float())


def _csis_guide(draw, guide, observations=None):
    pyro.module(guide._pyro_name, guide)
    obs_vals = observations["observed"]
    images = torch.zeros(obs_vals.shape[0], *guide.shape, dtype=torch.long, device=obs_vals.device)
    images[:, guide.observed_mask] = obs_vals.long()
    # the loss is per image, so the learning rate does not depend on the batch size
    with pyro.plate("images", images.shape[0]), poutine.scale(scale=1.0 / images.shape[0]):
        pyro.sample("hidden", GuideDistribution(guide, images))


@torch.no_grad()
def heldout_log_q(guide, x):
    """Mean ``log q(x_H | x_O)`` in nats per image over the full images ``x``."""
    was = guide.training
    guide.eval()
    out = float(guide.log_q(x).mean())
    guide.train(was)
    return out


def train_guide(model, pattern="top_half", guide=None, steps=2000, batch_size=32, lr=2e-3,
                max_minutes=None, pool_size=None, refresh=None, warm_start=None, warm_steps=0,
                num_heldout=64, eval_every=50, seed=0, progress=False, arch=None):
    """Fit an amortised guide to ``model`` for one evidence pattern with Pyro's CSIS.

    * ``pattern``: ``"top_half"`` (observe the bottom half; hide the top half
      and the middle pixel), an observed region's name, or an observed mask;
    * data: exact joint draws from ``model.sample``. Drawing is the expensive
      part on a CPU, so a pool of ``pool_size`` draws (default ``8 *
      batch_size``) is made up front and ``refresh`` of them (default a
      quarter of a batch) are replaced by fresh draws each step;
    * ``warm_start``: optional real images (``N x C x H x W`` long, e.g.
      MNIST) used for the first ``warm_steps`` steps;
    * stops after ``steps`` steps or ``max_minutes`` minutes, whichever first.

    Returns the guide (eval mode) with ``guide.meta`` holding the loss history
    (``-log q`` per image), the held-out ``log q`` curve on fresh joint draws,
    steps, wall time and settings.
    """
    torch.manual_seed(seed)
    pyro.set_rng_seed(seed)
    dev = next(model.parameters()).device
    if guide is None:
        guide = new_guide(model, pattern, **(arch or {}))
    else:
        name, mask = resolve_pattern(pattern, model.shape)
        guide.check(model, mask.to(dev))
    model.eval()
    guide.train()
    pool_size = pool_size or 8 * batch_size
    refresh = max(1, batch_size // 4) if refresh is None else refresh
    t0 = time.time()
    heldout = model.sample(num_heldout) if num_heldout else None
    state = {"warm": warm_start is not None and warm_steps > 0, "pool": None}

    def draw():
        if state["warm"]:
            idx = torch.randint(len(warm_start), (batch_size,))
            return warm_start[idx].to(dev).long()
        pool = state["pool"]
        if pool is None:  # drawn when first needed: a warm start may never need it
            pool = state["pool"] = model.sample(pool_size)
        elif refresh:
            slots = torch.randint(pool_size, (refresh,))
            pool[slots] = model.sample(refresh)
        return pool[torch.randint(pool_size, (batch_size,), device=pool.device)]

    guide._pyro_name = f"guide_{id(guide)}"
    csis = pyro.infer.CSIS(_csis_model, _csis_guide, pyro.optim.Adam({"lr": lr}), training_batch_size=1)
    history, curve = [], []
    if heldout is not None:
        curve.append((0, heldout_log_q(guide, heldout)))
    stopped = "steps"
    step = 0
    try:
        for step in range(1, steps + 1):
            state["warm"] = warm_start is not None and step <= warm_steps
            history.append(csis.step(draw, guide))
            if heldout is not None and (step % eval_every == 0 or step == steps):
                curve.append((step, heldout_log_q(guide, heldout)))
                if progress:
                    print(f"step {step}: loss {sum(history[-eval_every:]) / len(history[-eval_every:]):.2f} "
                          f"held-out log q {curve[-1][1]:.2f} ({(time.time() - t0) / 60:.1f} min)", flush=True)
            if max_minutes is not None and time.time() - t0 > 60 * max_minutes:
                stopped = "max_minutes"
                if heldout is not None and curve[-1][0] != step:
                    curve.append((step, heldout_log_q(guide, heldout)))
                break
    finally:
        store = pyro.get_param_store()
        for k in [k for k in store.keys() if k.startswith(guide._pyro_name)]:
            del store[k]
    guide.meta.update({"loss": history, "heldout_log_q": curve, "steps": step, "stopped": stopped,
                       "wall_seconds": time.time() - t0, "batch_size": batch_size, "lr": lr,
                       "pool_size": pool_size, "refresh": refresh, "warm_steps": min(warm_steps, step) if warm_start is not None else 0})
    return guide.eval()


def main(argv=None):
    import argparse

    p = argparse.ArgumentParser(prog="python -m pixelprob.infer.guides",
                                description="Train an amortised PixelCNN guide by inference compilation (CSIS).")
    p.add_argument("--model", default="pixelcnn-mnist", help="shipped model name or checkpoint path")
    p.add_argument("--pattern", default="top_half", help=f"hidden-pixel pattern {sorted(PATTERNS)} or observed region")
    p.add_argument("--out", required=True, help="output .pt (a .md card is written next to it)")
    p.add_argument("--steps", type=int, default=100000)
    p.add_argument("--minutes", type=float, default=20.0)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--pool-size", type=int, default=None)
    p.add_argument("--refresh", type=int, default=None)
    p.add_argument("--warm-steps", type=int, default=0, help="first steps on MNIST training images")
    p.add_argument("--data", default=None, help="MNIST root for --warm-steps")
    p.add_argument("--init", default=None, help="start from this guide checkpoint (same pattern; model may differ)")
    p.add_argument("--channels", type=int, default=32)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    from ..checkpoint import load

    model = load(a.model)
    warm = None
    if a.warm_steps:
        from ..data import load_mnist
        warm = load_mnist("train", root=a.data, levels=model.levels).long()
    guide = None
    if a.init:
        guide = AutoregressiveGuide.load(a.init, device=next(model.parameters()).device)
        guide.fingerprint = model_fingerprint(model)  # re-targeted: fine-tuned below for this model
        prev = guide.meta
        guide.meta = {"init": str(a.init), "init_model": prev.get("model", "?"), "init_steps": prev.get("steps", 0),
                      "init_wall_seconds": prev.get("wall_seconds", 0.0), "init_warm_steps": prev.get("warm_steps", 0),
                      "init_command": prev.get("command", "?")}
    t0 = time.time()
    guide = train_guide(model, a.pattern, guide=guide, steps=a.steps, batch_size=a.batch_size, lr=a.lr,
                        max_minutes=a.minutes, pool_size=a.pool_size, refresh=a.refresh, warm_start=warm,
                        warm_steps=a.warm_steps, seed=a.seed, progress=True,
                        arch={"channels": a.channels, "layers": a.layers})
    guide.meta["command"] = "python -m pixelprob.infer.guides " + " ".join(argv if argv is not None else
                                                                             __import__("sys").argv[1:])
    guide.meta["model"] = str(a.model)
    guide.save(a.out)
    curve = guide.meta["heldout_log_q"]
    card = Path(a.out).with_suffix(".md")
    card.write_text(
        f"# {Path(a.out).stem}\n\n"
        f"Amortised guide q(hidden | observed) for `{a.model}` (fingerprint `{guide.fingerprint}`), "
        f"evidence pattern `{guide.pattern}`: {guide.num_hidden} hidden pixels, "
        f"{int(guide.observed_mask.sum())} observed.\n\n"
        f"- architecture: {json.dumps(guide.config.to_dict())}\n"
        f"- training: Pyro CSIS (inference compilation) on exact joint draws from the model's cached "
        f"sampler, batch {a.batch_size}, Adam lr {a.lr}, pool {guide.meta['pool_size']} refreshed by "
        f"{guide.meta['refresh']} draws per step, warm start steps on MNIST: {guide.meta['warm_steps']}\n"
        f"- steps: {guide.meta['steps']} (stopped by {guide.meta['stopped']}), wall time "
        f"{guide.meta['wall_seconds'] / 60:.1f} min\n"
        f"- held-out mean log q(hidden | observed) on {64} fresh joint draws: "
        f"{curve[0][1]:.1f} nats at step 0 -> {curve[-1][1]:.1f} nats at step {curve[-1][0]}\n"
        f"- command: `{guide.meta['command']}`\n"
        + (f"- initialised from `{guide.meta['init']}`: {guide.meta['init_steps']} CSIS steps "
           f"({guide.meta['init_warm_steps']} of them on MNIST training images) for `{guide.meta['init_model']}`, "
           f"{guide.meta['init_wall_seconds'] / 60:.1f} min, command `{guide.meta['init_command']}`; "
           f"total training wall time {(guide.meta['init_wall_seconds'] + guide.meta['wall_seconds']) / 60:.1f} min\n"
           if a.init else "") +
        f"- load: `pixelprob.infer.guides.AutoregressiveGuide.load(path)` (torch.load weights_only=True); "
        f"`method=\"svi\"` picks it up automatically for matching queries.\n")
    print(f"saved {a.out} and {card} ({(time.time() - t0) / 60:.1f} min)")


if __name__ == "__main__":
    main()
