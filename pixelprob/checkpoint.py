"""Checkpoints and ``pixelprob.load``.

A checkpoint is a dict ``{"kind", "config", "state_dict", "meta"}`` of plain
tensors, strings and numbers, so it loads with ``torch.load(...,
weights_only=True)``. Shipped checkpoints live in ``pixelprob/weights`` and are
named without the ``.pt`` (``"pixelcnn-mnist"``, ``"vae-mnist"``).
"""
from __future__ import annotations

from pathlib import Path

import torch

WEIGHTS_DIR = Path(__file__).parent / "weights"


def _kinds():
    from .models.pixelcnn import PixelCNN, PixelCNNConfig
    kinds = {"pixelcnn": (PixelCNN, PixelCNNConfig)}
    try:
        from .models.vae import VAE, VAEConfig
        kinds["vae"] = (VAE, VAEConfig)
    except ImportError:
        pass
    return kinds


def checkpoint_dict(model, meta=None):
    return {"kind": model.kind, "config": model.config.to_dict(),
            "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "meta": dict(meta or {})}


def save(model, path, meta=None):
    """Save ``model`` (state dict plus config) to ``path``."""
    torch.save(checkpoint_dict(model, meta), path)


def build_model(kind, config):
    kinds = _kinds()
    if kind not in kinds:
        raise ValueError(f"unknown model kind {kind!r}; known kinds: {sorted(kinds)}")
    cls, cfg_cls = kinds[kind]
    return cls(cfg_cls(**config))


def shipped():
    """Names of the checkpoints shipped inside the package."""
    return sorted(p.stem for p in WEIGHTS_DIR.glob("*.pt"))


def load(name_or_path, device=None):
    """A ready model in eval mode, from a shipped name or a checkpoint path.

    ``device`` defaults to CUDA when available, else CPU.
    """
    path = Path(name_or_path)
    if not path.exists():
        cand = WEIGHTS_DIR / f"{name_or_path}.pt"
        if not cand.exists():
            raise FileNotFoundError(
                f"no checkpoint at {name_or_path!r} and no shipped model of that name; "
                f"shipped models: {shipped()}")
        path = cand
    ck = torch.load(path, map_location="cpu", weights_only=True)
    model = build_model(ck["kind"], ck["config"])
    model.load_state_dict(ck["state_dict"])
    model.meta = ck.get("meta", {})
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return model.to(device).eval()
