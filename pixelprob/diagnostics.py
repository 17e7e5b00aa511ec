"""ArviZ conversion and convergence checks, in one place.

* :func:`build_inference_data` turns per-chain MCMC output (arrays shaped
  like ``MCMC.get_samples(group_by_chain=True)``: ``chain x draw x ...``,
  here with the evidence image as the first event dimension) into an
  ``az.InferenceData`` via ``az.from_dict``.
* :func:`mcmc_diagnostics` computes the rank-normalised split R-hat, bulk and
  tail ESS and the MCSE of the target's probabilities (Vehtari et al., 2021,
  through ``az.rhat``, ``az.ess``, ``az.mcse``) and warns when
  ``R-hat > 1.01`` or an ESS is below 400, the thresholds that paper
  recommends.
* :func:`importance_diagnostics` gives the effective sample size
  ``(sum w)^2 / sum w^2`` of self-normalised importance weights and the Pareto
  ``k-hat`` of their tail (``az.psislw``), warning when ``k-hat > 0.7``, above
  which the estimate's variance is unreliable (Vehtari et al., "Pareto
  smoothed importance sampling").
"""
from __future__ import annotations

import warnings

import numpy as np
import torch

RHAT_MAX = 1.01
ESS_MIN = 400
KHAT_MAX = 0.7


def _az():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # ArviZ's refactor notice on import
        import arviz as az
    return az


def _np(t):
    if t is None:
        return None
    if isinstance(t, torch.Tensor):
        t = t.detach().cpu()
        return t.numpy()
    return np.asarray(t)


def build_inference_data(target, log_joint, num_on=None, rb_probs=None, acceptance=None, evaluations=None,
                         levels=None, target_pixels=None, attrs=None):
    """``az.InferenceData`` from ``B x chains x draws x ...`` arrays.

    * posterior ``target`` (``chain, draw, image, target_pixel``): draws of the
      target pixels; ``log_joint`` (``chain, draw, image``): ``log p(x)`` of the
      state; ``num_on``: the number of hidden pixels above ``levels / 2``;
      ``rb_probs`` (``chain, draw, image, level``): the Rao-Blackwellised
      conditional of a one-pixel target.
    * sample_stats ``acceptance_rate`` and ``evaluations`` (candidate or
      image evaluations per chain per draw), ``chain, draw, image``.
    """
    az = _az()

    def cd(t):  # B x chains x draws x ... -> chains x draws x B x ...
        a = _np(t)
        return None if a is None else np.moveaxis(a, 0, 2)

    post = {"target": cd(target), "log_joint": cd(log_joint)}
    dims = {"target": ["image", "target_pixel"], "log_joint": ["image"], "num_on": ["image"],
            "rb_probs": ["image", "level"], "acceptance_rate": ["image"], "evaluations": ["image"]}
    if num_on is not None:
        post["num_on"] = cd(num_on)
    if rb_probs is not None:
        post["rb_probs"] = cd(rb_probs)
    stats = {}
    if acceptance is not None:
        stats["acceptance_rate"] = cd(acceptance)
    if evaluations is not None:
        stats["evaluations"] = cd(evaluations)
    B = post["target"].shape[2]
    coords = {"image": np.arange(B)}
    if target_pixels is not None:
        coords["target_pixel"] = list(target_pixels)
    if levels is not None:
        coords["level"] = np.arange(levels)
    with warnings.catch_warnings():
        # ArviZ guesses the layout is wrong when chains > draws; here it is right by construction
        warnings.filterwarnings("ignore", message="More chains", category=UserWarning)
        return az.from_dict(posterior=post, sample_stats=stats or None, coords=coords, dims=dims,
                            attrs=dict(attrs or {}))


def _series_stat(fn, arr, **kw):
    """``fn`` (az.rhat / az.ess / az.mcse) on each series of ``arr`` (``chains x draws x M``) -> ``M``."""
    az = _az()
    if arr.shape[-1] == 0:
        return np.zeros(0)
    if fn is az.rhat and arr.shape[0] < 2:
        return np.full(arr.shape[-1], np.nan)  # R-hat compares chains: undefined for one
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="More chains", category=UserWarning)
        ds = az.convert_to_dataset({"x": arr}, dims={"x": ["series"]})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.asarray(fn(ds, **kw)["x"].values, dtype=float)


def mcse_mean(series):
    """ESS-based MCSE of the mean of each series; ``series``: ``M x chains x draws`` -> ``M``.

    Constant series have MCSE 0 (ArviZ gives NaN there).
    """
    series = np.asarray(series, dtype=float)
    out = np.zeros(series.shape[0])
    live = series.reshape(series.shape[0], -1).std(1) > 0
    if live.any():
        out[live] = _series_stat(_az().mcse, np.moveaxis(series[live], 0, -1), method="mean")
    return np.nan_to_num(out, nan=0.0)


def level_frequencies(draws, levels):
    """``image x pixel x level`` frequencies of ``chain x draw x image x pixel`` integer draws."""
    ch, D, B, T = draws.shape
    flat = (np.arange(B * T).reshape(B, T) * levels)[None, None] + draws
    return np.bincount(flat.ravel(), minlength=B * T * levels).reshape(B, T, levels) / (ch * D)


def indicator_mcse(draws, levels, max_series=20000):
    """MCSE of each level's frequency, ``image x pixel x level``, from ``chain x draw x image x pixel`` draws.

    Series that never change (a level never or always drawn) get 0. Up to
    ``max_series`` live series use ArviZ's ESS-based MCSE; beyond that, batch
    means (the chains cut into ~sqrt(draws) batches), which needs no
    per-series autocorrelation fit.
    """
    ch, D, B, T = draws.shape
    freq = level_frequencies(draws, levels)
    out = np.zeros((B, T, levels))
    b, p, v = np.nonzero((freq > 0) & (freq < 1))
    if b.size == 0:
        return out
    if b.size <= max_series:
        ind = (draws[:, :, b, p] == v).astype(float)  # chain, draw, M
        out[b, p, v] = np.nan_to_num(_series_stat(_az().mcse, ind, method="mean"), nan=0.0)
        return out
    size = max(1, int(np.sqrt(D)))
    nb = D // size
    for s in range(0, b.size, max_series):
        bb, pp, vv = b[s:s + max_series], p[s:s + max_series], v[s:s + max_series]
        ind = (draws[:, : nb * size, bb, pp] == vv).astype(float)
        means = ind.reshape(ch, nb, size, -1).mean(2).reshape(ch * nb, -1)
        out[bb, pp, vv] = means.std(0, ddof=1) / np.sqrt(ch * nb) if ch * nb > 1 else 0.0
    return out


def _probability_series(idata, threshold):
    """The target's probability series: RB probabilities, or indicators of the draws.

    Returns ``chains x draws x M`` and ``M`` labels, keeping only the entries
    whose posterior mean is at least ``threshold`` (the levels that carry the
    answer; near-zero levels have undefined R-hat).
    """
    post = idata.posterior
    if "rb_probs" in post:
        a = post["rb_probs"].values  # chain, draw, image, level
        labels = [f"image {b} level {v}" for b in range(a.shape[2]) for v in range(a.shape[3])]
        a = a.reshape(a.shape[0], a.shape[1], -1)
    else:
        t = post["target"].values.astype(np.int64)  # chain, draw, image, pixel
        L = post.coords["level"].size if "level" in post.coords else int(t.max()) + 1
        mean = level_frequencies(t, L)  # image, pixel, level
        b, p, v = np.nonzero(mean >= threshold)
        labels = [f"image {i} pixel {j} level {k}" for i, j, k in zip(b, p, v)]
        return (t[:, :, b, p] == v).astype(float), labels, (b, p, v)
    mean = a.mean((0, 1))
    keep = np.nonzero(mean >= threshold)[0]
    return a[..., keep], [labels[i] for i in keep], keep


def mcmc_diagnostics(idata, threshold=0.01, warn=True):
    """R-hat, bulk/tail ESS and MCSE of the target's probabilities and the scalar summaries.

    Returns a dict with per-quantity arrays (``rhat``, ``ess_bulk``, ``ess_tail``,
    ``mcse`` for the probabilities of levels with mean >= ``threshold``, and
    for ``log_joint`` / ``num_on`` per image) and the worst values
    ``max_rhat``, ``min_ess_bulk``, ``min_ess_tail``. Constant series (NaN
    R-hat) are skipped. Warns (``warnings.warn``) when ``max_rhat > 1.01`` or
    either ESS is below 400.
    """
    az = _az()
    post = idata.posterior
    out = {}
    probs, labels, keep = _probability_series(idata, threshold)
    out["prob_labels"] = labels
    out["rhat"] = _series_stat(az.rhat, probs, method="rank")
    out["ess_bulk"] = _series_stat(az.ess, probs, method="bulk")
    out["ess_tail"] = _series_stat(az.ess, probs, method="tail")
    out["mcse"] = _series_stat(az.mcse, probs, method="mean")
    if "rb_probs" in post:
        full = post["rb_probs"].values
        series = np.moveaxis(full.reshape(full.shape[0], full.shape[1], -1), -1, 0)
        out["_mcse_rb"] = mcse_mean(series).reshape(full.shape[2], full.shape[3])
    rh, eb, et = [out["rhat"]], [out["ess_bulk"]], [out["ess_tail"]]
    for name in ("log_joint", "num_on"):
        if name in post:
            a = post[name].values.astype(float)  # chain, draw, image
            out[f"{name}_rhat"] = _series_stat(az.rhat, a, method="rank")
            out[f"{name}_ess_bulk"] = _series_stat(az.ess, a, method="bulk")
            out[f"{name}_ess_tail"] = _series_stat(az.ess, a, method="tail")
            rh.append(out[f"{name}_rhat"])
            eb.append(out[f"{name}_ess_bulk"])
            et.append(out[f"{name}_ess_tail"])

    def worst(parts, f):
        v = np.concatenate([np.asarray(p, dtype=float).ravel() for p in parts])
        v = v[np.isfinite(v)]
        return float(f(v)) if v.size else float("nan")

    out["max_rhat"] = worst(rh, np.max)
    out["min_ess_bulk"] = worst(eb, np.min)
    out["min_ess_tail"] = worst(et, np.min)
    out["num_chains"] = int(post.sizes["chain"])
    out["num_draws"] = int(post.sizes["draw"])
    if warn:
        problems = []
        if out["max_rhat"] > RHAT_MAX:
            problems.append(f"R-hat {out['max_rhat']:.3f} > {RHAT_MAX}")
        if out["min_ess_bulk"] < ESS_MIN or out["min_ess_tail"] < ESS_MIN:
            problems.append(f"ESS (bulk {out['min_ess_bulk']:.0f}, tail {out['min_ess_tail']:.0f}) < {ESS_MIN}")
        if problems:
            warnings.warn("MCMC may not have converged: " + "; ".join(problems) +
                          f" ({out['num_chains']} chains x {out['num_draws']} draws); run longer chains "
                          "(num_samples, warmup) or more chains", RuntimeWarning, stacklevel=2)
    return out


def importance_diagnostics(log_weights, warn=True):
    """ESS and Pareto k-hat of importance weights; ``log_weights``: ``... x S``.

    ``ess = (sum w)^2 / sum w^2`` per row; ``khat`` from ``az.psislw``.
    Warns when any ``khat > 0.7``. Returns ``{"ess", "khat", "max_khat",
    "min_ess", "num_samples"}``.
    """
    az = _az()
    lw = _np(log_weights).astype(float)
    if lw.ndim == 0 or lw.shape[-1] < 2:
        raise ValueError(f"log_weights must have a sample dimension (last) of size >= 2, got shape {lw.shape}")
    if not np.isfinite(lw).any(-1).all():
        raise ValueError("every row of log_weights has no finite entry: all weights are zero")
    norm = lw - np.max(np.where(np.isfinite(lw), lw, -np.inf), -1, keepdims=True)
    w = np.exp(norm)
    ess = w.sum(-1) ** 2 / (w ** 2).sum(-1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        _, khat = az.psislw(np.where(np.isfinite(lw), lw, -1e300), reff=1.0)
    khat = np.asarray(khat, dtype=float)
    out = {"ess": ess, "khat": khat, "max_khat": float(np.nanmax(khat)), "min_ess": float(ess.min()),
           "num_samples": int(lw.shape[-1])}
    if warn and out["max_khat"] > KHAT_MAX:
        warnings.warn(f"importance weights are heavy-tailed: Pareto k-hat {out['max_khat']:.2f} > {KHAT_MAX} "
                      "(the estimate may be unreliable; use more samples or a better proposal)",
                      RuntimeWarning, stacklevel=2)
    return out
