"""Why the PixelCNN's masks matter: a legal model next to two illegal ones.

Trains three small PixelCNNs on MNIST with the same budget:

* ``legal``: the usual masks, so the logits at pixel i depend only on x_<i;
* ``center``: the first layer also sees the pixel it predicts;
* ``below``: the vertical stack also sees the row below.

The illegal models reach a far lower *training* bits per dimension -- they
can copy the answer from their input -- yet their samples are garbage: the
number they report is not a likelihood. The script prints the training and
held-out bpd, the number of (output, input) pairs that break the raster
order (``pixelprob.models.check_autoregressive``), and how far each model's
"conditional" for one pixel is from summing to one, and saves one figure
(bpd curves, then a grid of samples per model).

    python examples/illegal_mask.py --data /path/to/mnist --out illegal_mask.png
    python examples/illegal_mask.py --quick          # a few steps, to see it run

The data root is ``--data`` or ``$PIXELPROB_DATA`` (a folder holding
``MNIST/raw``). Illegal models are sampled by the textbook loop
(``cached=False``, one full forward pass per pixel): the fast cached sampler
assumes causal masks and refuses them.
"""
import argparse
import math
import time

import torch

from pixelprob.data import load_mnist
from pixelprob.models import PixelCNN, check_autoregressive

VARIANTS = [("legal", None), ("center", "center"), ("below", "below")]


def train_curve(model, data, steps, batch_size, lr=1e-3, seed=0):
    """Adam on the model's own bits per dimension; returns the per-step training bpd."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    curve = []
    model.train()
    for _ in range(steps):
        xb = data[torch.randint(len(data), (batch_size,), generator=g)]
        loss = model.calc_likelihood(xb)  # -log p(x) * log2(e) / (C*H*W), batch mean
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        curve.append(loss.item())
    model.eval()
    return curve


@torch.no_grad()
def conditional_mass(model, images, r, c):
    """``sum_v p_model(x_rc = v | x with x_rc = v)`` for each image.

    For a causal model the logits at (r, c) ignore x_rc, so this is exactly 1.
    A model that sees x_rc gives each candidate its own distribution, and the
    sum can reach ``levels``: its "conditionals" do not normalise.
    """
    out = []
    for x in images:
        xs = x.long().expand(model.levels, *x.shape).clone()
        xs[:, 0, r, c] = torch.arange(model.levels)
        p = torch.softmax(model(xs)[:, :, 0, r, c], 1)  # candidate x levels
        out.append(float(p.diagonal().sum()))
    return out


def smooth(y, k):
    if len(y) < k or k < 2:
        return y
    return [sum(y[i - k + 1: i + 1]) / k for i in range(k - 1, len(y))]


def tile(x, nrow):
    """``N x 1 x H x W`` integer images as one ``rows*H x nrow*W`` array."""
    n, _, H, W = x.shape
    rows = math.ceil(n / nrow)
    out = torch.full((rows * (H + 1) - 1, nrow * (W + 1) - 1), float(x.max() if n else 0))
    for k in range(n):
        i, j = divmod(k, nrow)
        out[i * (H + 1): i * (H + 1) + H, j * (W + 1): j * (W + 1) + W] = x[k, 0].float()
    return out.numpy()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=None, help="MNIST root (default: $PIXELPROB_DATA)")
    p.add_argument("--steps", type=int, default=500, help="training steps per model")
    p.add_argument("--channels", type=int, default=16)
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--subset", type=int, default=10000, help="training images used")
    p.add_argument("--samples", type=int, default=16, help="samples drawn per model")
    p.add_argument("--out", default="illegal_mask.png", help="where to save the figure")
    p.add_argument("--quick", action="store_true", help="a few steps on a few images (a smoke test)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    if a.quick:
        a.steps, a.subset, a.samples = 15, 256, 4

    train = load_mnist("train", a.data)[: a.subset].long()
    val = load_mnist("val", a.data)[:500].long()
    results = {}
    for name, illegal in VARIANTS:
        torch.manual_seed(a.seed)
        model = PixelCNN(channels=a.channels, layers=a.layers, illegal=illegal)
        t0 = time.time()
        curve = train_curve(model, train, a.steps, a.batch_size, seed=a.seed)
        with torch.no_grad():
            val_bpd = float(model.calc_likelihood(val))
        bad = check_autoregressive(model, trials=1)
        mass = conditional_mass(model, val[:4], 14, 14)
        torch.manual_seed(a.seed)
        # the fast cached sampler refuses illegal models: the textbook loop (one full pass per pixel) for them
        samples = model.sample(a.samples, cached=illegal is None)
        results[name] = dict(curve=curve, val=val_bpd, bad=len(bad), mass=mass, samples=samples,
                             seconds=time.time() - t0)
        print(f"{name:7s} final train bpd {sum(curve[-20:]) / len(curve[-20:]):.3f}  held-out bpd {val_bpd:.3f}  "
              f"non-causal (output, input) pairs {len(bad):6d}  "
              f"sum_v p(x_14,14 = v | ...) = {', '.join(f'{m:.2f}' for m in mass)}  ({time.time() - t0:.0f} s)",
              flush=True)

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(14, 3.6), gridspec_kw={"width_ratios": [1.6, 1, 1, 1]})
    k = max(1, a.steps // 20)
    for name, r in results.items():
        y = smooth(r["curve"], k)
        axes[0].plot(range(len(r["curve"]) - len(y) + 1, len(r["curve"]) + 1), y,
                     label=f"{name} (held-out {r['val']:.2f})")
    axes[0].set_xlabel("training step")
    axes[0].set_ylabel("training bits / dim")
    axes[0].set_title("training bpd (the illegal numbers are not likelihoods)", fontsize=9)
    axes[0].legend(fontsize=8)
    for ax, (name, r) in zip(axes[1:], results.items()):
        ax.imshow(tile(r["samples"], int(math.ceil(math.sqrt(a.samples)))), cmap="gray", vmin=0, vmax=255)
        ax.set_title(f"{name}: samples ({r['bad']} non-causal pairs)", fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(a.out, dpi=110)
    print(f"figure: {a.out}")
    return results


if __name__ == "__main__":
    main()
