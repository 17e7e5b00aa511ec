"""Questions d and g: the evidence comes *after* the hidden pixels in raster order.

    d. p(x_middle | bottom half)        g. x_top ~ p(x_top | bottom half)

No chain-rule read-out applies: the ~400 hidden pixels (the top half and the
middle pixel) depend on each other and on the evidence below them. Three
kinds of method answer:

* ``importance``: likelihood weighting -- the prior as proposal, weights
  p(x_obs | x_hidden); the honest baseline, whose ESS and PSIS k-hat show
  it collapsing here;
* ``gibbs``: MCMC over the hidden pixels with the full conditionals
  p(x_i | x_-i) from local re-evaluation; four variants (exact, mh, pruned,
  textbook) that all leave the posterior invariant and differ in cost;
* ``svi``: a learned guide q(x_hidden | x_obs) (a shipped amortised one when
  it matches, else fitted to the query), then importance weighting against
  the exact joint.

Exact and textbook Gibbs cost 256 local (exact) or full (textbook) model
evaluations per pixel update, minutes per sweep over 400 pixels on a CPU, so
the script compares the four variants on a 3x3 hidden patch around the middle
pixel and runs the cheap ones (mh, pruned) on the full questions.

    python examples/hard_queries.py --out figs          # a few minutes of CPU time
    python examples/hard_queries.py --quick              # about a minute; tiny budgets, rough answers
"""
import argparse
import warnings
from pathlib import Path

import torch

import pixelprob as pp
from pixelprob.data import shipped_digits


def show(label, r):
    d = r.diagnostics
    keys = ("ess", "khat", "max_rhat", "min_ess_bulk", "acceptance_rate")
    diag = ", ".join(f"{k} {d[k]:.3g}" for k in keys if isinstance(d.get(k), (int, float)))
    if r.num_target == 1:
        ans = f"P(level >= 128) = {float(r.probs[128:].sum()):.3f}"
    else:
        ans = f"mean level of the {r.num_target} target pixels {float(r.mean().mean()):.1f}"
    print(f"{label:22s} {ans:48s} {r.num_model_evals:9d} evals {r.elapsed:6.1f} s  {diag}", flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description="questions d and g by importance sampling, Gibbs and SVI")
    ap.add_argument("--model", default="pixelcnn-mnist")
    ap.add_argument("--digit", type=int, default=7)
    ap.add_argument("--sweeps", type=int, default=4, help="Gibbs draws (sweeps) per chain after warm-up")
    ap.add_argument("--chains", type=int, default=2)
    ap.add_argument("--samples", type=int, default=64, help="importance / SVI draws")
    ap.add_argument("--svi-seconds", type=float, default=15.0, help="time limit of a per-query guide fit")
    ap.add_argument("--textbook", action="store_true", help="also run textbook Gibbs on the patch (slow)")
    ap.add_argument("--skip-g", action="store_true", help="only question d")
    ap.add_argument("--quick", action="store_true", help="tiny budgets")
    ap.add_argument("--out", default=None, help="folder for figures")
    a = ap.parse_args(argv)
    if a.quick:
        a.sweeps, a.samples, a.svi_seconds = 1, 16, 3.0
    warm = max(1, a.sweeps // 2)
    svi_opts = dict(max_seconds=a.svi_seconds, particles=4, min_steps=5) if a.quick else dict(max_seconds=a.svi_seconds)

    model = pp.load(a.model, device="cpu")
    digit = shipped_digits()[0][a.digit].long()
    print(f"digit {a.digit}: true middle pixel {int(digit[0, 14, 14])}")
    warnings.simplefilter("ignore")  # small budgets warn (R-hat, ESS, k-hat); the printed diagnostics show it
    out = {}

    # -- every Gibbs variant on a small query: a 3x3 patch hidden, everything else observed --------------
    patch = pp.rect(13, 16, 13, 16)
    variants = ["exact", "mh", "pruned"] + (["textbook"] if a.textbook else [])
    for v in variants:
        r = pp.query(model, observe=(~patch)(digit), target=pp.middle_pixel, method="gibbs", variant=v,
                     num_samples=max(a.sweeps, 2), warmup=warm, chains=a.chains, warn=False)
        show(f"patch gibbs-{v}", r)
        out[f"patch-{v}"] = r

    # -- d: the middle pixel given the bottom half ------------------------------------------------------
    ev = pp.bottom_half(digit)
    out["d-importance"] = pp.query(model, observe=ev, target=pp.middle_pixel, method="importance",
                                   num_samples=a.samples)
    show("d importance", out["d-importance"])
    for v in ("mh", "pruned"):
        n = a.sweeps if v == "mh" else max(1, a.sweeps // 2)  # a pruned sweep costs ~8x an mh sweep
        out[f"d-gibbs-{v}"] = pp.query(model, observe=ev, target=pp.middle_pixel, method="gibbs", variant=v,
                                       num_samples=n, warmup=max(1, n // 2), chains=a.chains, warn=False)
        show(f"d gibbs-{v}", out[f"d-gibbs-{v}"])
    out["d-svi"] = pp.query(model, observe=ev, target=pp.middle_pixel, method="svi", num_samples=a.samples,
                            **svi_opts)
    show("d svi", out["d-svi"])

    # -- g: the whole top half given the bottom half (inpainting) ---------------------------------------
    if not a.skip_g:
        out["g-importance"] = pp.query(model, observe=ev, target=pp.top_half, method="importance",
                                       num_samples=a.samples)
        show("g importance", out["g-importance"])
        out["g-gibbs-mh"] = pp.query(model, observe=ev, target=pp.top_half, method="gibbs", variant="mh",
                                     num_samples=a.sweeps, warmup=warm, chains=a.chains, warn=False)
        show("g gibbs-mh", out["g-gibbs-mh"])
        out["g-svi"] = pp.query(model, observe=ev, target=pp.top_half, method="svi", num_samples=a.samples,
                                **svi_opts)
        show("g svi", out["g-svi"])

    if a.out:
        folder = Path(a.out)
        folder.mkdir(parents=True, exist_ok=True)
        for name, r in out.items():
            r.plot(folder / f"{name}.png")  # bars for one pixel, a grid of inpaintings for g
        if "g-gibbs-mh" in out:
            imgs = torch.cat([digit[None], out["g-gibbs-mh"].sample_images()[0][-7:]])
            pp.plot_images(imgs, path=folder / "g-inpaintings.png", title="true digit, then Gibbs inpaintings")
        print(f"figures in {folder}/")
    return out


if __name__ == "__main__":
    main()
