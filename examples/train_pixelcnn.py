"""Train a PixelCNN on MNIST with ``pixelprob.train.train``, then ask it a question.

The full run is the recipe of the shipped ``pixelcnn-mnist`` (gated, 48
channels, 6 layers, 12 epochs, learning rate 1e-3 halved every 4 epochs);
``--quick`` trains a small model for one short epoch on a subset (a few
hundred steps), enough to see the loop, the checkpoints and TensorBoard logs.

    python examples/train_pixelcnn.py --data /path/to/mnist --out runs/my-pixelcnn --quick
    tensorboard --logdir runs/my-pixelcnn/tb

The data root is ``--data`` or ``$PIXELPROB_DATA`` (a folder holding
``MNIST/raw``). A run that is stopped resumes from ``out/last.pt``.
"""
import argparse

import torch

import pixelprob as pp
from pixelprob.data import load_mnist
from pixelprob.models import PixelCNN
from pixelprob.train import train


def main(argv=None):
    ap = argparse.ArgumentParser(description="train a PixelCNN on MNIST")
    ap.add_argument("--data", default=None, help="MNIST root (default: $PIXELPROB_DATA)")
    ap.add_argument("--out", default="runs/example-pixelcnn")
    ap.add_argument("--quick", action="store_true", help="small model, ~300 steps on a subset")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)

    torch.manual_seed(a.seed)
    train_x, val_x = load_mnist("train", a.data), load_mnist("val", a.data)
    if a.quick:
        model = PixelCNN(channels=16, layers=3, gated=True)
        # one epoch of 300 steps of 32 images: the epoch ends, so it is validated and best.pt is written
        train_x, val_x = train_x[: 300 * 32], val_x[:500]
        opts = dict(epochs=1, batch_size=32, save_every=100, sample_grid=4)
    else:
        model = PixelCNN(channels=48, layers=6, gated=True)
        opts = dict(epochs=12, batch_size=64, lr=1e-3, lr_decay=0.5, decay_every=4)
    res = train(model, train_x, val_x, a.out, seed=a.seed, meta={"example": "examples/train_pixelcnn.py"}, **opts)
    print(f"validation bpd per epoch: {[round(v, 3) for v in res['history']]}; best {res['best_val']:.3f}; "
          f"{res['wall_seconds']:.0f} s; checkpoint {res['best']}")

    trained = pp.load(res["best"], device="cpu")  # any checkpoint loads like the shipped weights
    r = pp.query(trained, target=pp.first_pixel, method="exact")
    print(f"p(first pixel = 0) = {float(r.probs[0]):.3f}")
    return res


if __name__ == "__main__":
    main()
