"""All plotting: probability bars, image grids, MCMC traces and ranks, ELBO curves.

Every function takes a result (or tensors), draws with matplotlib's Agg
backend, and saves a PNG when ``path`` is given. Returns the figure.
"""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402


def _save(fig, path):
    if path is not None:
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
    return fig


def plot_probs(probs, stderr=None, path=None, title=None, ax=None, label=None, color=None):
    """Bar chart of one pixel's distribution over levels, with 2-sigma error bars."""
    probs = torch.as_tensor(probs).detach().double().cpu()
    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 2.6))
    lv = torch.arange(probs.numel())
    err = None if stderr is None else 2 * torch.as_tensor(stderr).detach().double().cpu()
    ax.bar(lv.numpy(), probs.numpy(), width=1.0, yerr=None if err is None else err.numpy(),
           color=color, alpha=0.75, label=label, error_kw={"elinewidth": 0.6, "ecolor": "k"})
    ax.set_xlabel("level")
    ax.set_ylabel("probability")
    ax.set_xlim(-1, probs.numel())
    if title:
        ax.set_title(title, fontsize=9)
    return _save(fig, path) if fig is not None else ax.figure


def plot_images(images, levels=256, path=None, nrow=8, title=None, highlight=None):
    """Grid of integer images (``N x C x H x W``); ``highlight`` outlines a mask."""
    x = torch.as_tensor(images).detach().cpu().float()
    if x.dim() == 3:
        x = x.unsqueeze(0)
    n = x.shape[0]
    ncol = min(nrow, n)
    nr = (n + ncol - 1) // ncol
    fig, axes = plt.subplots(nr, ncol, figsize=(1.3 * ncol, 1.3 * nr + (0.3 if title else 0)), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k < n:
            img = x[k, 0] if x.shape[1] == 1 else x[k].permute(1, 2, 0) / (levels - 1)
            ax.imshow(img.numpy(), cmap="gray", vmin=0, vmax=levels - 1, interpolation="nearest")
            if highlight is not None:
                m = torch.as_tensor(highlight).cpu().any(0).float().numpy()
                ax.contour(m, levels=[0.5], colors="tab:red", linewidths=0.6)
    if title:
        fig.suptitle(title, fontsize=9)
    return _save(fig, path)


def plot_result(result, path=None, index=0, title=None):
    """A one-pixel answer as a bar chart, a region answer as a grid of samples (or mean images)."""
    if result.num_target == 1:
        se = None if result.stderr_full is None else result.stderr_full[index, 0]
        t = title or f"{result.method}: {result.num_model_evals} evals, {result.elapsed:.1f}s"
        return plot_probs(result.probs_full[index, 0], se, path=path, title=t)
    if result.samples_full is not None:
        imgs = result.sample_images()[index][:16]
    else:
        lv = torch.arange(result.levels, dtype=result.probs_full.dtype, device=result.probs_full.device)
        mean = (result.probs_full[index] * lv).sum(-1)
        img = result.images[index].double().clone()
        img[result.target_mask] = mean
        imgs = img.unsqueeze(0)
    return plot_images(imgs, result.levels, path=path, title=title or result.method, highlight=result.target_mask)


def _mcmc_idata(result):
    idata = getattr(result, "inference_data", None)
    if idata is None:
        raise ValueError(f"method {getattr(result, 'method', '?')!r} returned no inference_data: trace and rank "
                         "plots need an MCMC result (e.g. method='gibbs')")
    return idata


def _mcmc_vars(idata, var_names):
    if var_names is not None:
        return list(var_names)
    post = idata.posterior
    # the target's RB probabilities at its likeliest levels, or its draws, plus the scalar summaries
    names = [v for v in ("log_joint", "num_on") if v in post]
    return (["rb_probs"] if "rb_probs" in post else ["target"]) + names


def _mcmc_coords(idata, var_names, image, max_levels):
    post = idata.posterior
    coords = {"image": [image]}
    if "rb_probs" in var_names and "rb_probs" in post:
        mean = post["rb_probs"].sel(image=image).mean(("chain", "draw")).values
        coords["level"] = [int(v) for v in mean.argsort()[::-1][:max_levels]]
    if "target" in var_names and "target_pixel" in post.coords:
        coords["target_pixel"] = list(post.coords["target_pixel"].values[:max_levels])
    return coords


def plot_trace(result, path=None, var_names=None, image=0, max_levels=3):
    """ArviZ trace plot (``az.plot_trace``) of an MCMC result's ``inference_data``.

    By default: the Rao-Blackwellised probabilities of the target's
    ``max_levels`` likeliest levels (or the first target pixels' draws), the
    log joint and the number of "on" hidden pixels, for evidence ``image``.
    """
    import arviz as az
    idata = _mcmc_idata(result)
    names = _mcmc_vars(idata, var_names)
    axes = az.plot_trace(idata, var_names=names, coords=_mcmc_coords(idata, names, image, max_levels),
                         compact=True, show=False)
    fig = axes.ravel()[0].figure
    fig.suptitle(f"{result.method} trace (image {image})", fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def plot_rank(result, path=None, var_names=None, image=0, max_levels=3):
    """ArviZ rank plot (``az.plot_rank``): per-chain rank histograms, flat when chains agree."""
    import arviz as az
    idata = _mcmc_idata(result)
    names = _mcmc_vars(idata, var_names)
    axes = az.plot_rank(idata, var_names=names, coords=_mcmc_coords(idata, names, image, max_levels), show=False)
    fig = axes.ravel()[0].figure if hasattr(axes, "ravel") else axes.figure
    fig.suptitle(f"{result.method} rank plot (image {image})", fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def plot_elbo(result, path=None, smooth=None):
    """The guide's training curve from ``result.inference_data.svi_data`` (``method="svi"``).

    Plots the per-step loss (negative ELBO, negative importance-weighted
    bound, or the amortised guide's CSIS loss ``-log q``, per image; the
    group's ``objective`` attribute says which) and a moving average over
    ``smooth`` steps (default: about 1/20 of the run).
    """
    import numpy as np

    idata = getattr(result, "inference_data", None)
    if idata is None or "svi_data" not in idata.groups():
        raise ValueError(f"method {getattr(result, 'method', '?')!r} returned no svi_data group: ELBO curves "
                         "need a result of method='svi' whose guide has a recorded fit")
    data = idata.svi_data
    if "loss" in data.data_vars:
        losses = np.asarray(data["loss"].values, dtype=float)
        objective = data.attrs.get("objective", "svi")
    else:  # the VAE's fits record the ELBO itself
        losses = -np.asarray(data["elbo"].values, dtype=float)
        objective = "elbo"
    steps = np.asarray(data["step"].values)
    fig, ax = plt.subplots(figsize=(6, 3))
    # one curve per fit: several when a guide was fitted per evidence image (dims image x step)
    for i, loss in enumerate(np.atleast_2d(losses)):
        keep = ~np.isnan(loss)
        loss, st = loss[keep], steps[keep]
        tag = "" if losses.ndim == 1 else f"image {i}: "
        ax.plot(st, loss, lw=0.6, alpha=0.5, label=f"{tag}per step")
        k = smooth or max(1, len(loss) // 20)
        if k > 1 and len(loss) >= k:
            avg = np.convolve(loss, np.ones(k) / k, mode="valid")
            ax.plot(st[k - 1:], avg, lw=1.5, label=f"{tag}mean of {k} steps")
    ax.set_xlabel("step")
    ax.set_ylabel({"elbo": "-ELBO (nats / image)", "rws": "-log mean w (nats / image)",
                   "csis": "-log q (nats / image)"}.get(objective, "loss"))
    stop = data.attrs.get("stopped_by")
    ax.set_title(f"{result.method}: {objective} fit, {len(steps)} steps" + (f", stopped by {stop}" if stop else ""),
                 fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)
