"""Exact-match rejection sampling (tiny models only).

Draw whole images from the model by ancestral sampling and keep those whose
observed pixels equal the evidence. Accepted images are exact posterior
draws; marginals are their histograms, with binomial standard errors. The
acceptance rate is ``p(x_obs)``, so this only works for small evidence.
"""
from __future__ import annotations

import torch

from . import register
from ._common import result

MAX_DRAWS = 2_000_000


@register("rejection", kinds=("pixelcnn",), exact=False)
@torch.no_grad()
def solve(model, images, observed, target, num_samples=None, batch=4096, max_draws=MAX_DRAWS):
    """Keep prior samples that match the evidence exactly."""
    S = num_samples or 1000
    B = images.shape[0]
    probs, ses, samples, rates = [], [], [], []
    for b in range(B):
        acc, drawn = [], 0
        while sum(len(a) for a in acc) < S:
            if drawn >= max_draws:
                got = sum(len(a) for a in acc)
                raise RuntimeError(
                    f"rejection accepted only {got} of {drawn} prior draws for image {b} (acceptance "
                    f"{got / drawn:.2e}); the evidence is too improbable for exact matching, use another method")
            x = model.sample(batch)
            drawn += batch
            ok = (x[:, observed] == images[b, observed]).all(1)
            acc.append(x[ok][:, target])
        vals = torch.cat(acc)[:S]
        onehot = torch.nn.functional.one_hot(vals, model.levels).double()
        p = onehot.mean(0)
        probs.append(p)
        ses.append((p * (1 - p) / S).sqrt())
        samples.append(vals)
        rates.append(S / drawn)
    return result(model, images, observed, target, torch.stack(probs), "rejection", False,
                  stderr_full=torch.stack(ses), samples_full=torch.stack(samples),
                  diagnostics={"acceptance_rate": float(sum(rates) / len(rates))},
                  notes=[f"{S} accepted exact posterior draws per image"])
