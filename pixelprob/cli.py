"""``pixelprob`` command line: a thin layer over the Python API."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def _add_train(sub):
    p = sub.add_parser("train", help="train a PixelCNN or a VAE on MNIST")
    p.add_argument("kind", choices=["pixelcnn", "vae"])
    p.add_argument("--out", required=True, help="output folder (checkpoints, TensorBoard logs)")
    p.add_argument("--data", default=None, help="MNIST root (default: $PIXELPROB_DATA or download)")
    p.add_argument("--levels", type=int, default=256)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--lr-decay", type=float, default=0.5)
    p.add_argument("--decay-every", type=int, default=None)
    p.add_argument("--clip", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-minutes", type=float, default=None)
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--subset", type=int, default=None, help="train on the first N training images")
    p.add_argument("--device", default=None)
    p.add_argument("--no-resume", action="store_true")
    g = p.add_argument_group("PixelCNN")
    g.add_argument("--channels", type=int, default=32)
    g.add_argument("--layers", type=int, default=5)
    g.add_argument("--kernel-size", type=int, default=3)
    g.add_argument("--dilations", type=str, default=None, help="comma-separated, one per layer")
    g.add_argument("--gated", action="store_true")
    g.add_argument("--illegal", choices=["center", "below"], default=None)
    g = p.add_argument_group("VAE")
    g.add_argument("--latent-dim", type=int, default=None)
    g.add_argument("--hidden", type=int, default=None)


def _device(name):
    import torch
    return name or ("cuda" if torch.cuda.is_available() else "cpu")


def cmd_train(a):
    import torch

    from .data import load_mnist
    from .train import train

    torch.manual_seed(a.seed)
    if a.kind == "pixelcnn":
        from .models.pixelcnn import PixelCNN, PixelCNNConfig
        dil = [int(d) for d in a.dilations.split(",")] if a.dilations else None
        model = PixelCNN(PixelCNNConfig(levels=a.levels, channels=a.channels, layers=a.layers,
                                        kernel_size=a.kernel_size, dilations=dil, gated=a.gated,
                                        illegal=a.illegal))
    else:
        from .models.vae import VAE, VAEConfig
        kw = {k: v for k, v in dict(latent_dim=a.latent_dim, hidden=a.hidden).items() if v is not None}
        model = VAE(VAEConfig(levels=a.levels, **kw))
    model.to(_device(a.device))
    tr = load_mnist("train", a.data, levels=a.levels)
    va = load_mnist("val", a.data, levels=a.levels)
    if a.subset:
        tr = tr[: a.subset]
    meta = {"command": "pixelprob " + " ".join(sys.argv[1:]), "levels": a.levels}
    res = train(model, tr, va, a.out, epochs=a.epochs, batch_size=a.batch_size, lr=a.lr, lr_decay=a.lr_decay,
                decay_every=a.decay_every, clip=a.clip, seed=a.seed, resume=not a.no_resume,
                max_steps=a.max_steps, max_minutes=a.max_minutes, meta=meta)
    print(json.dumps({"best_val_bpd": res["best_val"], "history": res["history"], "stopped": res["stopped"],
                      "wall_seconds": res["wall_seconds"], "best": str(res["best"])}, indent=1))


def main(argv=None):
    parser = argparse.ArgumentParser(prog="pixelprob", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    _add_train(sub)
    try:
        from .demo import add_demo_parser
        add_demo_parser(sub)
    except ImportError:
        pass
    try:
        from .query_cli import add_query_parser
        add_query_parser(sub)
    except ImportError:
        pass
    a = parser.parse_args(argv)
    try:
        if a.cmd == "train":
            return cmd_train(a)
        return a.func(a)
    except (ValueError, TypeError, FileNotFoundError) as err:
        # bad input: say what is wrong, without a traceback from deep inside
        parser.exit(2, f"pixelprob {a.cmd}: error: {err}\n")


if __name__ == "__main__":
    sys.exit(main())
