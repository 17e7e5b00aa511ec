"""Likelihood weighting: self-normalised importance sampling with the prior as proposal.

The proposal runs the chain rule over all pixels with the observed ones
clamped: hidden pixels ``x_h ~ p(x_h | x_<h)``. Its density is the product of
the hidden factors, so the importance weight is the product of the observed
factors,

    log w = sum_{j observed} log p(x_j | x_<j),

read off one forward pass. Estimates are self-normalised,
``E[f] ~ sum_s w_s f(x^(s)) / sum_s w_s``, with delta-method standard errors
``sqrt(sum_s wbar_s^2 (f_s - E[f])^2)``; ``log mean w`` estimates
``log p(x_obs)``. Quality is reported as the effective sample size
``1 / sum wbar^2`` and the PSIS k-hat from ArviZ (unreliable above 0.7). It is
the honest baseline for the hard queries: correct, but its weights degenerate
when much evidence comes late in raster order.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import torch

from . import register
from ._common import result


def weight_diagnostics(log_w):
    """ESS, PSIS k-hat and log evidence for one set of log weights (1-D tensor).

    ``khat`` is NaN when all weights are equal (nothing to fit a tail to).
    """
    from ..diagnostics import importance_diagnostics

    lw = log_w.double()
    if float(lw.max() - lw.min()) < 1e-9:
        # equal weights: the proposal is the posterior; with no tail, PSIS's k is undefined (ArviZ says inf)
        ess, khat = float(len(lw)), float("nan")
    else:
        d = importance_diagnostics(lw.cpu(), warn=False)
        ess, khat = float(d["ess"]), d["max_khat"]
    return {"ess": ess, "khat": khat, "log_evidence": float(torch.logsumexp(lw, 0) - math.log(len(lw)))}


def weighted_marginals(values, log_w, levels):
    """Self-normalised per-pixel marginals and delta-method stderr. ``values``: S x T."""
    wbar = torch.softmax(log_w.double(), 0)  # S
    onehot = torch.nn.functional.one_hot(values.long(), levels).double()  # S x T x L
    mean = torch.einsum("s,stl->tl", wbar, onehot)
    se = torch.einsum("s,stl->tl", wbar * wbar, (onehot - mean) ** 2).sqrt()
    return mean, se


@register("importance", kinds=("pixelcnn",), exact=False)
@torch.no_grad()
def solve(model, images, observed, target, num_samples=None, batch=256):
    """Likelihood weighting (prior proposal, self-normalised)."""
    import arviz as az

    S = num_samples or 1000
    B = images.shape[0]
    probs, ses, samples, lws, diags = [], [], [], [], []
    for b in range(B):
        vals, lw = [], []
        for s0 in range(0, S, batch):
            n = min(batch, S - s0)
            x = model.sample(n, given=images[b: b + 1].expand(n, -1, -1, -1), mask=observed)
            logp = torch.log_softmax(model(x), 1).gather(1, x.unsqueeze(1)).squeeze(1)  # n x C x H x W
            lw.append(logp[:, observed].sum(1))
            vals.append(x[:, target])
        vals, lw = torch.cat(vals), torch.cat(lw)
        mean, se = weighted_marginals(vals, lw, model.levels)
        probs.append(mean)
        ses.append(se)
        # resample for joint samples of the target (equally weighted)
        pick = torch.multinomial(torch.softmax(lw.double(), 0).float(), S, replacement=True)
        samples.append(vals[pick])
        lws.append(lw)
        diags.append(weight_diagnostics(lw))
    d = {k: float(np.mean([x[k] for x in diags])) for k in diags[0]}
    d["per_image"] = diags
    notes = [f"{S} prior samples per image, weights = observed pixels' likelihood"]
    worst = max((x["khat"] for x in diags if x["khat"] == x["khat"]), default=float("nan"))
    if worst > 0.7:
        msg = (f"PSIS k-hat {worst:.2f} > 0.7: the importance weights are too "
               "heavy-tailed for a reliable answer; use gibbs or svi")
        warnings.warn(msg)
        notes.append(msg)
    lw_np = torch.stack(lws).cpu().numpy()  # B x S
    # chain=1, draw=S, image=B: az.psislw reads sample_stats.log_weight per image
    idata = az.from_dict(sample_stats={"log_weight": np.moveaxis(lw_np, 0, -1)[None]},
                         dims={"log_weight": ["image"]})
    return result(model, images, observed, target, torch.stack(probs), "importance", False,
                  stderr_full=torch.stack(ses), samples_full=torch.stack(samples), inference_data=idata,
                  diagnostics=d, notes=notes)
