"""Brute-force enumeration of every hidden pixel (tiny models only).

With hidden pixels ``h`` (everything not observed, target included),

    p(h | x_obs) = p(h, x_obs) / sum_h' p(h', x_obs),

computed by evaluating the exact joint of all ``levels ** n_hidden``
completions. Target marginals sum it out; joint samples are drawn from it.
A size guard refuses queries that would need too many evaluations.
"""
from __future__ import annotations

import torch

from . import register
from ._common import result

MAX_CONFIGS = 2 ** 20


def _size(model, observed):
    n_hidden = int((~observed).sum())
    return n_hidden, model.levels ** n_hidden


def _applies(model, observed, target, max_configs=MAX_CONFIGS):
    n_hidden, configs = _size(model, observed)
    if configs > max_configs:
        return (f"enumerating {n_hidden} hidden pixels with {model.levels} levels needs {model.levels}^{n_hidden} "
                f"= {float(configs):.3g} configurations, i.e. as many model evaluations per evidence image "
                f"(limit {max_configs:,}); observe more pixels or use an approximate method")
    return None


@register("enumerate", kinds=("pixelcnn",), exact=True, applies=_applies)
@torch.no_grad()
def solve(model, images, observed, target, num_samples=None, batch=8192, max_configs=MAX_CONFIGS):
    """Exact posterior by evaluating every completion of the hidden pixels."""
    why = _applies(model, observed, target, max_configs)
    if why:
        raise ValueError(why)
    n_hidden, configs = _size(model, observed)
    L, dev = model.levels, images.device
    hidden = ~observed
    # raster position of each target pixel among the hidden ones
    t_in_h = target[hidden]
    B = images.shape[0]
    probs = torch.zeros(B, int(target.sum()), L, dtype=torch.float64, device=dev)
    samples = []
    for b in range(B):
        lps = []
        for start in range(0, configs, batch):
            idx = torch.arange(start, min(start + batch, configs), device=dev)
            digits = (idx.view(-1, 1) // (L ** torch.arange(n_hidden - 1, -1, -1, device=dev))) % L
            x = images[b].expand(len(idx), *images.shape[1:]).clone()
            x[:, hidden] = digits
            lps.append(model.log_prob(x).double())
        post = torch.softmax(torch.cat(lps), 0)
        all_idx = torch.arange(configs, device=dev)
        digits = (all_idx.view(-1, 1) // (L ** torch.arange(n_hidden - 1, -1, -1, device=dev))) % L
        tv = digits[:, t_in_h]  # configs x T
        for t in range(tv.shape[1]):
            probs[b, t].index_add_(0, tv[:, t], post)
        if num_samples:
            pick = torch.multinomial(post.float(), num_samples, replacement=True)
            samples.append(tv[pick])
    notes = [f"exact: {configs} completions of {n_hidden} hidden pixels per image"]
    return result(model, images, observed, target, probs, "enumerate", True,
                  samples_full=torch.stack(samples) if samples else None, notes=notes,
                  diagnostics={"configurations": configs})
