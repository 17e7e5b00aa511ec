"""Test-set bits per dimension of a VAE by the ELBO and by the IWAE bound, and MNIST query timings.

    python benchmarks/bench_vae.py --weights vae-mnist --data /work/shared/data --n-iwae 10000 --k 1000
    python benchmarks/bench_vae.py --queries            # the VAE methods on one test digit

bpd = -log p(x) / (784 ln 2). The ELBO (one draw per image, closed-form KL)
and IWAE-k are both lower bounds on log p(x), so both bpd figures are upper
bounds on the model's true bpd; IWAE-k is the tighter one. IWAE with k=1000 on
all 10,000 test digits means 10 million decoder passes: minutes on a GPU,
hours on a CPU, hence ``--n-iwae`` (the first n test digits; the ELBO is also
reported on that same subset).
"""
import argparse
import math
import time

import torch

import pixelprob as pp
from pixelprob.data import load_mnist


def bpd(nats, dims):
    return -nats / (dims * math.log(2))


def bounds(model, x, k, batch):
    D = math.prod(model.shape)
    e, w = [], []
    t0 = time.time()
    with torch.no_grad():
        for i in range(0, len(x), batch):
            e.append(model.elbo(x[i: i + batch]).cpu())
    t_e = time.time() - t0
    t0 = time.time()
    if k:
        for i in range(0, len(x), max(1, batch // 50)):
            w.append(model.iwae_bound(x[i: i + max(1, batch // 50)], k).cpu())
    t_w = time.time() - t0
    e = bpd(torch.cat(e).double(), D)
    w = bpd(torch.cat(w).double(), D) if w else None
    return e, w, t_e, t_w


def fmt(v):
    return f"{float(v.mean()):.4f} +- {float(v.std() / math.sqrt(len(v))):.4f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", default="vae-mnist")
    ap.add_argument("--data", default=None)
    ap.add_argument("--n-elbo", type=int, default=10000)
    ap.add_argument("--n-iwae", type=int, default=10000)
    ap.add_argument("--k", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default=None)
    ap.add_argument("--queries", action="store_true", help="time the VAE query methods instead")
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    model = pp.load(a.weights, device=a.device)
    test = load_mnist("test", a.data, levels=model.levels)
    if a.queries:
        return queries(model, test)
    e_all, _, t_e, _ = bounds(model, test[: a.n_elbo], 0, a.batch)
    print(f"model {a.weights}: {model.config.to_dict()}")
    print(f"{'bound':<10}{'images':>8}{'bpd (mean +- s.e.)':>24}{'seconds':>10}")
    print(f"{'ELBO':<10}{a.n_elbo:>8}{fmt(e_all):>24}{t_e:>10.1f}")
    if a.n_iwae:
        e_sub, w_sub, t_e2, t_w = bounds(model, test[: a.n_iwae], a.k, a.batch)
        print(f"{'ELBO':<10}{a.n_iwae:>8}{fmt(e_sub):>24}{t_e2:>10.1f}")
        print(f"{'IWAE-' + str(a.k):<10}{a.n_iwae:>8}{fmt(w_sub):>24}{t_w:>10.1f}")
        print(f"IWAE gain on the same images: {fmt(e_sub - w_sub)} bpd")


def queries(model, test):
    x = test[0].long()
    # reference: the SVI-fitted proposal with many draws (the encoder alone is a poor proposal here)
    ref = pp.query(model, pp.bottom_half(x), pp.middle_pixel, method="svi", num_samples=20000, seed=1)
    print(f"middle pixel given bottom half of test digit 0 (true value {int(x[0, 14, 14])}); reference: "
          f"svi-fitted proposal with 20,000 weighted draws (ESS {ref.diagnostics['ess']:.0f}, "
          f"k-hat {ref.diagnostics['khat']:.2f}, log p(x_obs) {ref.diagnostics['log_evidence']:.2f})")
    print(f"{'method':<12}{'seconds':>9}{'evals':>9}{'mean level':>12}{'TV to ref':>11}  diagnostics")
    for m, opts in [("importance", {}), ("svi", {}), ("nuts", dict(num_samples=50, warmup=50)), ("mwg", {})]:
        r = pp.query(model, pp.bottom_half(x), pp.middle_pixel, method=m, seed=0, **opts)
        d = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.diagnostics.items()
             if k in ("ess", "khat", "r_hat", "ess_bulk", "acceptance_rate", "steps")}
        tv = 0.5 * float((r.probs - ref.probs).abs().sum())
        print(f"{m:<12}{r.elapsed:>9.1f}{r.num_model_evals:>9}{float(r.mean()):>12.1f}{tv:>11.3f}  {d}")


if __name__ == "__main__":
    main()
