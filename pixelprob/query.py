"""``pixelprob.query``: validate a question, choose a method, run it, time and count it."""
from __future__ import annotations

import time

import pyro
import torch

from .infer import METHODS, available, load_methods
from .regions import as_evidence, as_region, nothing

# auto's preference order for PixelCNN queries without an exact read-out
# (svi before gibbs: its cost is bounded, gibbs's default budget on MNIST-size queries is not)
_AUTO_PIXELCNN = ["exact", "enumerate", "ancestral", "svi", "gibbs", "importance"]
_AUTO_VAE = ["enumerate", "svi", "nuts", "importance"]


def _check_model(model):
    for attr in ("kind", "shape", "levels"):
        if not hasattr(model, attr):
            raise TypeError(f"model must be a pixelprob model (PixelCNN or VAE, e.g. pixelprob.load('pixelcnn-mnist')); "
                            f"{type(model).__name__} has no {attr!r}")


def _images(ev, model):
    x = ev.images
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"evidence images must be a torch.Tensor, got {type(x).__name__}")
    batched = x.dim() == 4
    if x.dim() == 3:
        x = x.unsqueeze(0)
    if x.dim() != 4 or tuple(x.shape[1:]) != tuple(model.shape):
        raise ValueError(f"evidence images must have shape {tuple(model.shape)} or (batch, "
                         f"{', '.join(map(str, model.shape))}), got {tuple(ev.images.shape)}")
    if x.dtype.is_floating_point or x.dtype == torch.bool or x.is_complex():
        raise TypeError(f"evidence images must hold integer levels 0..{model.levels - 1} "
                        f"(torch.long or torch.uint8), got dtype {x.dtype}")
    return x, batched


def query(model, observe=None, target=None, method="auto", num_samples=None, seed=0, **options):
    """Answer ``p(target | observe)`` on ``model``.

    * ``observe``: evidence, e.g. ``bottom_half(image)`` or ``(mask, images)``;
      ``None`` observes nothing. A batch of images is answered in one call.
    * ``target``: a region (``middle_pixel``, ``top_half``, ``pixel(3, 4)``, a
      boolean mask, or a region name).
    * ``method``: one of :func:`pixelprob.methods` or ``"auto"``, which picks
      an exact method when one applies and says why in ``result.notes``.
    * ``num_samples``: the Monte Carlo budget (meaning depends on the method).
    * ``seed``: seeds torch and Pyro, so a call is repeatable.

    Returns a :class:`~pixelprob.result.QueryResult`.
    """
    _check_model(model)
    illegal = getattr(getattr(model, "config", None), "illegal", None)
    if illegal is not None:
        raise ValueError(f"this PixelCNN was built with illegal={illegal!r}: its conditionals see pixels they "
                         "predict, so they are not a chain-rule density and no query on it has an answer")
    load_methods()
    shape = tuple(model.shape)
    if target is None:
        raise ValueError("target is required: the pixels to answer for, e.g. target=middle_pixel")
    tmask = as_region(target).mask(shape)
    if not tmask.any():
        raise ValueError("the target region is empty: it selects no pixel of a "
                         f"{'x'.join(map(str, shape))} image")
    ev = as_evidence(observe, shape)
    if ev is None:
        from .regions import Evidence
        ev = Evidence(nothing, torch.zeros(shape, dtype=torch.long))
    omask = ev.mask(shape)
    images, batched = _images(ev, model)
    device = next(model.parameters()).device
    omask_d = omask.to(images.device)
    obs_vals = images[:, omask_d] if omask.any() else images.new_zeros(0)
    if obs_vals.numel() and (int(obs_vals.min()) < 0 or int(obs_vals.max()) >= model.levels):
        raise ValueError(f"observed pixel values lie in [{int(obs_vals.min())}, {int(obs_vals.max())}] "
                         f"but this model has levels 0..{model.levels - 1}")
    overlap = omask & tmask
    if overlap.any():
        n = int(overlap.sum())
        raise ValueError(f"observe and target overlap in {n} pixel(s) (first at channel/row/column "
                         f"{tuple(int(i) for i in overlap.nonzero()[0])}); a pixel cannot be both given and asked for")
    images = torch.where(omask_d, images.long(), torch.zeros_like(images, dtype=torch.long)).to(device)
    omask, tmask = omask.to(device), tmask.to(device)

    notes = []
    if method == "auto":
        order = _AUTO_PIXELCNN if model.kind == "pixelcnn" else _AUTO_VAE
        reasons = []
        for name in order:
            if name not in METHODS:
                continue
            why = METHODS[name].why_not(model, omask, tmask)
            if why is None:
                method = name
                break
            reasons.append(f"{name}: {why}")
        else:
            raise ValueError("no method can answer this query: " + "; ".join(reasons))
        notes.append(f"auto chose {method!r}" + (f" (skipped {'; '.join(reasons)})" if reasons else
                                                  " (first applicable in the preference order)"))
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; methods for this {model.kind} model: {available(model)}")
    spec = METHODS[method]
    why = spec.why_not(model, omask, tmask)
    if why is not None:
        raise ValueError(f"{why}. Methods that can answer this query: {available(model, omask, tmask)}")

    torch.manual_seed(seed)
    pyro.set_rng_seed(seed)
    e0 = getattr(model, "num_evals", 0) + getattr(model, "num_local_evals", 0)
    t0 = time.perf_counter()
    was_training = model.training
    model.eval()
    try:
        res = spec.solve(model, images, omask, tmask, num_samples=num_samples, **options)
    finally:
        model.train(was_training)
    res.elapsed = time.perf_counter() - t0
    res.num_model_evals = getattr(model, "num_evals", 0) + getattr(model, "num_local_evals", 0) - e0
    res.batched = batched
    res.seed = seed
    res.notes = notes + res.notes
    return res


def methods(model=None):
    """All method names, or those that support ``model``'s kind."""
    load_methods()
    return sorted(METHODS) if model is None else available(model)
