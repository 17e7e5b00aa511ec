"""Questions b and f: exact ancestral samples, Monte Carlo answers.

* b. p(x_middle) = E_{x_<m ~ p}[ p(x_middle | x_<m) ]: draw the pixels before
  the middle one in raster order and average the model's own conditional
  (Rao-Blackwellised), with standard errors;
* f. x_bottom ~ p(x_bottom | top half): the chain rule continued from an
  observed prefix -- every draw is exact.

    python examples/monte_carlo.py --samples 64 --out figs
"""
import argparse
from pathlib import Path

import pixelprob as pp
from pixelprob.data import shipped_digits


def main(argv=None):
    ap = argparse.ArgumentParser(description="questions b and f by ancestral sampling")
    ap.add_argument("--model", default="pixelcnn-mnist", help="shipped name or checkpoint path")
    ap.add_argument("--digit", type=int, default=7)
    ap.add_argument("--samples", type=int, default=64, help="ancestral samples for b")
    ap.add_argument("--completions", type=int, default=8, help="completions drawn for f")
    ap.add_argument("--out", default=None, help="folder for figures")
    ap.add_argument("--quick", action="store_true", help="tiny budgets")
    a = ap.parse_args(argv)
    if a.quick:
        a.samples, a.completions = 8, 2

    model = pp.load(a.model, device="cpu")
    digit = shipped_digits()[0][a.digit].long()

    rb = pp.query(model, target=pp.middle_pixel, method="ancestral", num_samples=a.samples)
    p, se = rb.probs, rb.stderr
    print(f"b  p(x_middle): P(level < 32) = {float(p[:32].sum()):.3f}, P(level >= 224) = {float(p[224:].sum()):.3f}; "
          f"largest standard error {float(se.max()):.4f}  [{a.samples} samples, {rb.num_model_evals} evaluations, "
          f"{rb.elapsed:.1f} s]")

    rf = pp.query(model, observe=pp.top_half(digit), target=pp.bottom_half, method="ancestral",
                  num_samples=a.completions)
    completed = rf.sample_images()[0]  # completions x 1 x 28 x 28: top half given, bottom half drawn
    print(f"f  {completed.shape[0]} completions of the bottom half; mean level of the bottom half per draw: "
          f"{[round(float(x[0, 14:].float().mean()), 1) for x in completed]}  [{rf.elapsed:.1f} s]")
    if a.out:
        Path(a.out).mkdir(parents=True, exist_ok=True)
        rb.plot(Path(a.out) / "b.png")
        rf.plot(Path(a.out) / "f.png")  # an image grid, the sampled region outlined
        print(f"figures in {a.out}/")
    return rb, rf


if __name__ == "__main__":
    main()
