"""Questions a-g on the shipped VAE: every answer goes through p(z | x_obs).

Given z the pixels are independent, so for any target t and evidence o

    p(x_t | x_o) = E_{z ~ p(z | x_o)} [ p(x_t | z) ],   p(z | x_o) ∝ p(z) prod_{i in o} p(x_i | z),

and the methods differ only in how they reach p(z | x_o): the prior
(ancestral, nothing observed), importance sampling with the encoder as
proposal, NUTS on z, Metropolis-within-Gibbs on (z, hidden pixels), or an
SVI-fitted Gaussian used as an importance proposal.

    python examples/vae_queries.py            # about a minute of CPU time
    python examples/vae_queries.py --quick    # tiny budgets
"""
import argparse
import warnings

import pixelprob as pp
from pixelprob.data import shipped_digits


def line(q, r):
    if r.num_target == 1:
        p = r.probs
        ans = f"P(level >= 128) = {float(p[128:].sum()):.3f} (max stderr {float(r.stderr.max()):.3f})"
    else:
        ans = f"{r.num_target} target pixels, mean level {float(r.mean().mean()):.1f}"
    d = r.diagnostics
    # importance-type methods report ess / khat; the MCMC methods r_hat / ess_bulk of z
    diag = ", ".join(f"{k} {d[k]:.3g}" for k in ("ess", "khat", "r_hat", "ess_bulk") if isinstance(d.get(k), float))
    print(f"{q}  {r.method:10s} {ans:42s} {r.num_model_evals:8d} evals {r.elapsed:6.1f} s  {diag}")


def main(argv=None):
    ap = argparse.ArgumentParser(description="questions a-g on the VAE")
    ap.add_argument("--model", default="vae-mnist")
    ap.add_argument("--digit", type=int, default=7)
    ap.add_argument("--samples", type=int, default=500, help="draws of z for ancestral / importance / svi")
    ap.add_argument("--mcmc", type=int, default=30, help="NUTS / MwG draws per chain (after as many warm-up steps)")
    ap.add_argument("--quick", action="store_true", help="tiny budgets")
    a = ap.parse_args(argv)
    if a.quick:
        a.samples, a.mcmc = 200, 10

    model = pp.load(a.model, device="cpu")
    digit = shipped_digits()[0][a.digit].long()
    print(f"log p(digit) >= {float(model.log_prob(digit[None], k=200)):.1f} nats (IWAE, k=200); "
          f"true middle pixel {int(digit[0, 14, 14])}")
    S, M = a.samples, a.mcmc
    runs = [
        ("a", dict(target=pp.first_pixel, method="ancestral", num_samples=S)),
        ("b", dict(target=pp.middle_pixel, method="ancestral", num_samples=S)),
        ("c", dict(observe=pp.top_half(digit), target=pp.middle_pixel, method="importance", num_samples=S)),
        ("d", dict(observe=pp.bottom_half(digit), target=pp.middle_pixel, method="importance", num_samples=S)),
        ("d", dict(observe=pp.bottom_half(digit), target=pp.middle_pixel, method="nuts", num_samples=M,
                   warmup=M, num_chains=2)),
        ("d", dict(observe=pp.bottom_half(digit), target=pp.middle_pixel, method="mwg", num_samples=M,
                   warmup=M, num_chains=2)),
        ("d", dict(observe=pp.bottom_half(digit), target=pp.middle_pixel, method="svi", num_samples=S,
                   max_steps=100 if a.quick else 300, min_steps=20 if a.quick else 100,
                   window=10 if a.quick else 50)),
        ("e", dict(observe=(~pp.middle_pixel)(digit), target=pp.middle_pixel, method="svi", num_samples=S,
                   max_steps=100 if a.quick else 300, min_steps=20 if a.quick else 100,
                   window=10 if a.quick else 50)),
        ("f", dict(observe=pp.top_half(digit), target=pp.bottom_half, method="importance", num_samples=S)),
        ("g", dict(observe=pp.bottom_half(digit), target=pp.top_half, method="importance", num_samples=S)),
    ]
    results = []
    for q, kw in runs:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # short chains warn about R-hat / ESS; the line shows them
            r = pp.query(model, **kw)
        line(q, r)
        results.append((q, r))
    return results


if __name__ == "__main__":
    main()
