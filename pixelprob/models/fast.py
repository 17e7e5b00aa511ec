"""Fast exact PixelCNN evaluation: an activation cache and local re-evaluation.

Every activation of :class:`~pixelprob.models.pixelcnn.PixelCNN` at a position
depends on a fixed window of the layer below (the bounding box of the masked
kernel, see ``MaskedConv2d.reach``). Two consequences, after Ramachandran et
al., "Fast Generation for Convolutional Autoregressive Models" (2017):

* **Cached ancestral sampling.** The vertical stack at row ``r`` depends only on
  rows ``< r`` of the image, so it is computed once per row; the horizontal
  stack and the output head at ``(r, c)`` are computed for that one position,
  from cached activations to its left. One sample costs one column per layer
  per pixel instead of one full forward pass per pixel.

* **Local re-evaluation.** Changing pixel ``i`` changes activations only inside
  a cone below and to the right of it. :func:`local_logits` recomputes just that
  cone, for a batch of candidate values, from a :class:`Cache` of the current
  image, and returns the affected conditionals and the change in
  ``log p(x)``; :meth:`Cache.commit` writes a chosen value back.

Both compute exactly the same convolutions as the full forward pass on smaller
windows, so results agree with it to floating-point rounding.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .pixelcnn import inverse_cdf


def _window(t, r0, r1, c0, c1):
    """``t[..., r0:r1, c0:c1]`` with zeros where the window leaves the image."""
    H, W = t.shape[-2:]
    pr0, pr1, pc0, pc1 = max(0, -r0), max(0, r1 - H), max(0, -c0), max(0, c1 - W)
    out = t[..., max(r0, 0): min(r1, H), max(c0, 0): min(c1, W)]
    if pr0 or pr1 or pc0 or pc1:
        out = F.pad(out, (pc0, pc1, pr0, pr1))
    return out


def _conv_window(conv, t, r0, r1, c0, c1):
    """Output of masked ``conv`` on rows ``r0:r1`` and columns ``c0:c1``, from full input ``t``."""
    top, bottom, left, right = conv.reach
    return conv.forward_valid(_window(t, r0 + top, r1 + bottom, c0 + left, c1 + right))


def _check_legal(model):
    if model.config.illegal is not None:
        raise ValueError("the fast paths assume a causal PixelCNN; this one was built with "
                         f"illegal={model.config.illegal!r}")


def cached_sample(model, x, mask, noise, upto=None):
    """Ancestral sampling with the activation cache (same draws as ``naive_sample``)."""
    _check_legal(model)
    _, H, W = model.shape
    upto = H * W if upto is None else upto
    # one cached sample costs about one full pass: count it as one evaluation per image
    model.num_evals += x.shape[0]
    xf = model.normalize(x)
    B = x.shape[0]
    ch = model.config.channels
    dev = xf.device
    n = len(model.layers)
    v = [torch.zeros(B, ch, H, W, device=dev) for _ in range(n + 1)]
    h = [torch.zeros(B, ch, H, W, device=dev) for _ in range(n + 1)]
    vf = [None] + [torch.zeros(B, layer.v_conv.weight.shape[0], H, W, device=dev) for layer in model.layers]
    scale = 2.0 / (model.levels - 1)
    for r in range(H):
        if r * W >= upto:
            break
        v[0][:, :, r: r + 1] = _conv_window(model.v_in, xf, r, r + 1, 0, W)
        for l, layer in enumerate(model.layers, 1):
            vf[l][:, :, r: r + 1] = _conv_window(layer.v_conv, v[l - 1], r, r + 1, 0, W)
            v[l][:, :, r: r + 1] = layer.act(vf[l][:, :, r: r + 1])
        for c in range(W):
            if r * W + c >= upto:
                break
            h[0][:, :, r: r + 1, c: c + 1] = _conv_window(model.h_in, xf, r, r + 1, c, c + 1)
            for l, layer in enumerate(model.layers, 1):
                hc = _conv_window(layer.h_conv, h[l - 1], r, r + 1, c, c + 1)
                h_feat = hc + layer.v_to_h(vf[l][:, :, r: r + 1, c: c + 1])
                h[l][:, :, r: r + 1, c: c + 1] = h[l - 1][:, :, r: r + 1, c: c + 1] + layer.h_out(layer.act(h_feat))
            logits = model.head(h[n][:, :, r: r + 1, c: c + 1]).view(B, model.levels, model.shape[0])
            draw = inverse_cdf(logits, noise[:, :, r, c])
            x[:, :, r, c] = torch.where(mask[:, :, r, c], x[:, :, r, c], draw)
            xf[:, :, r, c] = x[:, :, r, c].float() * scale - 1.0
    return x


# --------------------------------------------------------------------------------------
# Local re-evaluation
# --------------------------------------------------------------------------------------


def _spread(rect, conv, H, W):
    """Output positions of ``conv`` whose input window meets ``rect`` (clipped to the image)."""
    r0, r1, c0, c1 = rect
    top, bottom, left, right = conv.reach
    return (max(r0 - bottom, 0), min(r1 - top, H), max(c0 - right, 0), min(c1 - left, W))


def _empty(rect):
    return rect[0] >= rect[1] or rect[2] >= rect[3]


def _union(a, b):
    if _empty(a):
        return b
    if _empty(b):
        return a
    return (min(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), max(a[3], b[3]))


class Cache:
    """Every activation of a PixelCNN on a batch of images, for local updates.

    ``names`` lists the buffers in order; ``x`` holds the images, ``logp`` the
    per-pixel ``log p(x_i | x_<i)`` (``B x C x H x W``).
    """

    def __init__(self, model, x):
        _check_legal(model)
        self.model = model
        model.check_images(x)
        self.x = x.long().clone()
        self.refresh()

    @torch.no_grad()
    def refresh(self):
        """Recompute every buffer from ``self.x`` with one full forward pass."""
        m = self.model
        xf = m.normalize(self.x)
        acts = {"xf": xf, "v0": m.v_in(xf), "h0": m.h_in(xf)}
        for l, layer in enumerate(m.layers, 1):
            vf = layer.v_conv(acts[f"v{l - 1}"])
            hc = layer.h_conv(acts[f"h{l - 1}"])
            acts[f"vf{l}"] = vf
            acts[f"v{l}"], acts[f"h{l}"] = layer.combine(vf, hc, acts[f"h{l - 1}"])
        self.acts = acts
        logits = m.head(acts[f"h{len(m.layers)}"])
        B, _, H, W = logits.shape
        self.logits = logits.view(B, m.levels, m.shape[0], H, W)
        self.logp = F.log_softmax(self.logits, 1).gather(1, self.x.unsqueeze(1)).squeeze(1)
        self.pending = None
        return self

    def log_joint(self):
        return self.logp.flatten(1).sum(1)


@torch.no_grad()
def local_logits(cache: Cache, r: int, c: int, values: torch.Tensor):
    """Re-evaluate the model for candidate values of pixel ``(r, c)``.

    ``values`` is ``B x K x C`` (or ``K x C``, or ``K``): ``K`` candidate
    values of the pixel for each of the ``B`` cached images. Only the
    activations that the pixel can change are recomputed (its future receptive
    field, as a bounding box per layer).

    Returns a dict with

    * ``logits``: ``B x K x levels x C x h x w``, the conditionals on ``rect``,
    * ``rect``: ``(r0, r1, c0, c1)``, the image window they cover (it contains
      every factor ``p(x_j | x_<j)`` that the pixel enters, and the pixel),
    * ``delta``: ``B x K``, ``log p(x with candidate) - log p(x)``.

    The full conditional ``p(x_i = v | x_-i)`` is ``softmax(delta)`` over a
    full set of candidates ``v``.
    """
    m = cache.model
    a = cache.acts
    C, H, W = m.shape
    B = cache.x.shape[0]
    values = torch.as_tensor(values, device=cache.x.device).long()
    if values.dim() == 1:
        values = values.view(-1, 1).expand(-1, C)
    if values.dim() == 2:
        values = values.unsqueeze(0).expand(B, -1, -1)
    K = values.shape[1]
    if values.shape != (B, K, C):
        raise ValueError(f"values must be K, K x C or B x K x C with B={B}, C={C}; got {tuple(values.shape)}")
    if int(values.min()) < 0 or int(values.max()) >= m.levels:
        raise ValueError(f"candidate values must be in 0..{m.levels - 1}")

    def paste(name, rect, cand, cand_rect, conv=None):
        """Window ``rect`` of buffer ``name`` for every candidate (``B*K`` batch)."""
        base = a[name]
        if conv is not None:
            top, bottom, left, right = conv.reach
            wr = (rect[0] + top, rect[1] + bottom, rect[2] + left, rect[3] + right)
        else:
            wr = rect
        win = _window(base, *wr)
        win = win.unsqueeze(1).expand(-1, K, -1, -1, -1).reshape(B * K, *win.shape[1:]).clone()
        # overlap of cand_rect with wr, in both coordinate systems
        r0, r1 = max(wr[0], cand_rect[0]), min(wr[1], cand_rect[1])
        c0, c1 = max(wr[2], cand_rect[2]), min(wr[3], cand_rect[3])
        if cand is not None and r0 < r1 and c0 < c1:
            win[:, :, r0 - wr[0]: r1 - wr[0], c0 - wr[2]: c1 - wr[2]] = \
                cand[:, :, r0 - cand_rect[0]: r1 - cand_rect[0], c0 - cand_rect[2]: c1 - cand_rect[2]]
        return win

    m.num_local_evals += B * K
    px = (r, r + 1, c, c + 1)
    xf_c = (values.float() * (2.0 / (m.levels - 1)) - 1.0).reshape(B * K, C, 1, 1)
    new = {"xf": (xf_c, px)}

    def conv_on(conv, name, rect, cand, cand_rect):
        # An empty rect happens at the image border: nothing there changes.
        if _empty(rect):
            return None
        return conv.forward_valid(paste(name, rect, cand, cand_rect, conv))

    rect_v = _spread(px, m.v_in, H, W)
    rect_h = _spread(px, m.h_in, H, W)
    new["v0"] = (conv_on(m.v_in, "xf", rect_v, xf_c, px), rect_v)
    new["h0"] = (conv_on(m.h_in, "xf", rect_h, xf_c, px), rect_h)
    for l, layer in enumerate(m.layers, 1):
        v_prev, rv_prev = new[f"v{l - 1}"]
        h_prev, rh_prev = new[f"h{l - 1}"]
        rv = _spread(rv_prev, layer.v_conv, H, W) if v_prev is not None else (0, 0, 0, 0)
        vf = conv_on(layer.v_conv, f"v{l - 1}", rv, v_prev, rv_prev)
        rh_conv = _spread(rh_prev, layer.h_conv, H, W) if h_prev is not None else (0, 0, 0, 0)
        rh = _union(_union(rh_conv, rv), rh_prev if h_prev is not None else (0, 0, 0, 0))
        if _empty(rh):
            h_new = None
        else:
            hc = layer.h_conv.forward_valid(paste(f"h{l - 1}", rh, h_prev, rh_prev, layer.h_conv))
            _, h_new = layer.combine(paste(f"vf{l}", rh, vf, rv), hc, paste(f"h{l - 1}", rh, h_prev, rh_prev))
        new[f"vf{l}"] = (vf, rv)
        new[f"v{l}"] = (layer.act(vf) if vf is not None else None, rv)
        new[f"h{l}"] = (h_new, rh)
    n = len(m.layers)
    h_last, rh = new[f"h{n}"]
    out_rect = _union(rh, px)
    h_out = paste(f"h{n}", out_rect, h_last, rh)
    logits = m.head(h_out)
    hh, ww = out_rect[1] - out_rect[0], out_rect[3] - out_rect[2]
    logits = logits.view(B, K, m.levels, C, hh, ww)
    # the pixel values on out_rect, with the candidate pasted in
    xs = _window(cache.x, *out_rect).unsqueeze(1).expand(B, K, C, hh, ww).clone()
    xs[:, :, :, r - out_rect[0], c - out_rect[2]] = values
    lp_new = F.log_softmax(logits, 2).gather(2, xs.unsqueeze(2)).squeeze(2).flatten(2).sum(2)
    lp_old = _window(cache.logp, *out_rect).flatten(1).sum(1, keepdim=True)
    cache.pending = (r, c, values, new, out_rect, logits, xs)
    return {"logits": logits, "rect": out_rect, "delta": lp_new - lp_old}


@torch.no_grad()
def commit(cache: Cache, choice: torch.Tensor):
    """Write candidate ``choice[b]`` (an index into the last ``local_logits`` call) into the cache."""
    if cache.pending is None:
        raise RuntimeError("commit() needs a preceding local_logits() call on this cache")
    r, c, values, new, out_rect, logits, xs = cache.pending
    B, K = values.shape[:2]
    choice = torch.as_tensor(choice, device=cache.x.device).long().view(B)
    idx = torch.arange(B, device=cache.x.device) * K + choice
    for name, (t, rect) in new.items():
        if t is None:
            continue
        r0, r1, c0, c1 = rect
        cache.acts[name][:, :, r0:r1, c0:c1] = t[idx]
    cache.x[:, :, r, c] = values[torch.arange(B), choice]
    r0, r1, c0, c1 = out_rect
    lg = logits[torch.arange(B), choice]
    cache.logits[..., r0:r1, c0:c1] = lg
    cache.logp[..., r0:r1, c0:c1] = F.log_softmax(lg, 1).gather(1, xs[torch.arange(B), choice].unsqueeze(1)).squeeze(1)
    cache.pending = None


def full_conditional(cache: Cache, r: int, c: int, chunk: int = 64):
    """``log p(x_rc = v | x_-rc)`` for every level ``v``: ``B x levels`` (``C = 1`` only).

    Candidates are evaluated in chunks to bound memory; returns the normalised
    log-probabilities and the per-candidate ``delta`` of the log joint.
    """
    m = cache.model
    if m.shape[0] != 1:
        raise ValueError("full_conditional enumerates one channel; this model has C > 1")
    deltas = []
    for v0 in range(0, m.levels, chunk):
        vals = torch.arange(v0, min(v0 + chunk, m.levels), device=cache.x.device)
        deltas.append(local_logits(cache, r, c, vals)["delta"])
    delta = torch.cat(deltas, 1)
    cache.pending = None
    return torch.log_softmax(delta, 1), delta
