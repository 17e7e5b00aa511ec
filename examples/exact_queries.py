"""Questions a, c and e: the PixelCNN answers them exactly.

* a. p(x_first): the softmax at pixel (0, 0) -- nothing comes before it;
* c. p(x_middle | top half): the chain rule read off one forward pass;
* e. p(x_middle | every other pixel): all 256 values of the middle pixel
  scored by local re-evaluation of the network, then normalised.

    python examples/exact_queries.py                 # shipped weights, shipped digit 0
    python examples/exact_queries.py --digit 3 --out figs
"""
import argparse
from pathlib import Path

import pixelprob as pp
from pixelprob.data import shipped_digits


def describe(name, r):
    p = r.probs  # 256 probabilities of one pixel
    print(f"{name}: P(level < 32) = {float(p[:32].sum()):.3f}, P(level >= 224) = {float(p[224:].sum()):.3f}, "
          f"mean level {float(r.mean()):.1f}  [{r.method}, exact={r.exact}, {r.num_model_evals} model "
          f"evaluations, {r.elapsed:.2f} s]")


def main(argv=None):
    ap = argparse.ArgumentParser(description="questions a, c, e with exact methods")
    ap.add_argument("--model", default="pixelcnn-mnist", help="shipped name or checkpoint path")
    ap.add_argument("--digit", type=int, default=7, help="which of the 16 shipped test digits")
    ap.add_argument("--out", default=None, help="folder for bar charts")
    a = ap.parse_args(argv)

    model = pp.load(a.model, device="cpu")
    images, labels = shipped_digits()
    digit = images[a.digit].long()  # 1 x 28 x 28, levels 0..255
    print(f"digit {a.digit} (label {int(labels[a.digit])}); true middle pixel = {int(digit[0, 14, 14])}")

    ra = pp.query(model, target=pp.first_pixel, method="exact")
    rc = pp.query(model, observe=pp.top_half(digit), target=pp.middle_pixel, method="exact")
    re = pp.query(model, observe=(~pp.middle_pixel)(digit), target=pp.middle_pixel, method="exact")
    for name, r in (("a  p(x_first)", ra), ("c  p(x_middle | top half)", rc), ("e  p(x_middle | rest)", re)):
        describe(name, r)
    if a.out:
        Path(a.out).mkdir(parents=True, exist_ok=True)
        for q, r in (("a", ra), ("c", rc), ("e", re)):
            r.plot(Path(a.out) / f"{q}.png")
        print(f"bar charts in {a.out}/")
    return ra, rc, re


if __name__ == "__main__":
    main()
