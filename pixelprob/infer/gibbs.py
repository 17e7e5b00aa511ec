"""Gibbs sampling over the hidden pixels of a PixelCNN query (``method="gibbs"``).

The state is the value of the site ``"hidden"`` of
:func:`pixelprob.distributions.pixelcnn_query_program`: the hidden pixels of
``N = B * chains`` images (``N x n_hidden`` levels), whose density is the full
joint ``p(x) = prod_j p(x_j | x_<j)``. One update resamples one pixel ``i``
(one channel of it) from its full conditional

    pi(v) = p(x_i = v | x_-i)  proportional to  p(x_i = v | x_<i) * L(v),
    L(v)  = prod_{j > i} p(x_j | x_<j, x_i = v),

where only the factors ``j`` in the future receptive field of ``i`` change
with ``v``. A *sweep* updates every hidden pixel once (``scan="systematic"``,
raster order) or ``n_hidden`` uniformly drawn pixels (``scan="random"``; the
same pixel for every chain in the batch, so that the batch shares one local
re-evaluation; each chain on its own is still a random-scan chain).

Variants (all leave ``p(hidden | observed)`` invariant):

* ``"textbook"``: ``pi`` from ``levels`` full forward passes (the reference).
* ``"exact"``: ``pi`` from ``levels`` *local* re-evaluations
  (:func:`pixelprob.models.fast.local_logits`), chains and candidates batched.
* ``"mh"``: Metropolised Gibbs with the model's own conditional as proposal,
  ``v' ~ q = p(x_i | x_<i)`` (free: it is in the activation cache), accepted
  with probability ``min(1, L(v') / L(v))``. Two candidates per update
  (``v'`` and the current ``v``, whose re-evaluation lets rejected chains
  commit their own value).
* ``"pruned"``: an independence Metropolis-Hastings step whose proposal is the
  exact conditional on the ``topk`` most likely levels of ``q`` and ``q``
  itself on the rest:

      Q(v) = (1 - m) * pi(v) / pi(T)   for v in T (the top-k set of q),
      Q(v) = q(v)                      for v not in T,  m = q(not T).

  ``pi`` is evaluated on ``T`` and the current value (``k + 1`` candidates);
  a proposal in the tail costs two more. The acceptance probability is
  ``min(1, w(v') / w(v))`` with ``w = pi / Q``: ``w`` is the same constant on
  ``T`` (moves inside ``T`` are exact Gibbs moves, always accepted) and
  ``L(v) * const`` on the tail. ``Q`` has full support, so the chain stays
  irreducible and its stationary distribution is exactly ``pi``. (Restricting
  the proposal to ``T`` plus the current value alone would not be: a chain
  that sits outside ``T`` could leave it but never come back.)

Cost (MNIST model, 6 gated layers): a pixel's future receptive field is an
8 x 15 window at the output, so one candidate's local re-evaluation costs
35.5 MFLOP against 478 MFLOP for a full pass (13.5x, torch's FLOP counter).
The ``exact`` update therefore costs about 1/11 to 1/24 of the textbook one
in wall time, depending on how memory-bound the full pass is on the machine.
The ``mh`` (2 candidates) and ``pruned`` (``topk + 1`` to ``topk + 3``)
updates are two to three orders of magnitude cheaper than textbook
(``benchmarks/bench_gibbs.py``).

Rao-Blackwellisation: for a one-pixel target ``t`` the answer averages the
target's exact full conditional ``p(x_t | x_-t)`` over post-warm-up sweeps
(``E_pi[p(x_t | x_-t)] = p(x_t | observed)``, with lower variance than the
draws); for a region target it averages indicators of the joint draws.

Run through :class:`pyro.infer.MCMC` with ``num_chains=1``: the kernel
batches its chains itself, because a batch of chains shares each local
re-evaluation (the fast path's cost is per call, not per image) and because
Pyro's ``num_chains > 1`` either forks one process per chain or, with 2 CPUs,
runs them one after another on one kernel object. Pyro never calls
``end_warmup``, so the kernel counts warm-up calls itself, and ``setup``
resets every piece of state so a kernel object can be run again.
"""
from __future__ import annotations

import math
import torch
from pyro.infer import MCMC
from pyro.infer.mcmc.mcmc_kernel import MCMCKernel

from ..models import fast
from . import register
from ._common import result

VARIANTS = ("exact", "mh", "pruned", "textbook")
SCANS = ("systematic", "random")
INITS = ("ancestral", "uniform")


def _sites(mask):
    """``(k, r, c)`` of every True entry of a ``C x H x W`` mask, in raster order (pixel, then channel)."""
    idx = torch.nonzero(mask.permute(1, 2, 0))  # rows ordered by (r, c, k)
    return [(int(k), int(r), int(c)) for r, c, k in idx.tolist()]


class PixelGibbs(MCMCKernel):
    """Gibbs kernel over the hidden pixels of ``N = B * chains`` PixelCNN images.

    ``images``: ``B x C x H x W`` evidence (values outside ``observed`` are
    ignored); ``observed``: ``C x H x W`` bool; ``target``: ``C x H x W`` bool
    (a subset of the hidden pixels) or ``None``. See the module docstring for
    ``variant``, ``scan`` and ``topk``; ``init`` is ``"ancestral"`` (the model's
    ancestral sample with the observed pixels clamped), ``"uniform"``, or a
    tensor of hidden values broadcastable to ``B x chains x n_hidden`` (or of
    images, ``... x C x H x W``). Each :meth:`sample` call is one sweep during
    the first ``warmup_steps`` calls and ``thin`` sweeps afterwards.

    Records, per post-warm-up call, the target's values, its Rao-Blackwellised
    conditional, ``log p(x)``, the acceptance rate and the candidate
    evaluations per chain (``self.records``).
    """

    def __init__(self, model, images, observed, target=None, chains=4, variant="exact", scan="systematic",
                 init="ancestral", thin=1, topk=16, max_batch=64):
        if getattr(model, "kind", None) != "pixelcnn":
            raise TypeError("PixelGibbs needs a PixelCNN (pixelprob.models.PixelCNN)")
        if not isinstance(chains, int) or isinstance(chains, bool) or chains < 1:
            raise ValueError(f"chains must be a positive integer (chains are batched), got {chains!r}")
        if variant not in VARIANTS:
            raise ValueError(f"unknown Gibbs variant {variant!r}; choose one of {VARIANTS}")
        if scan not in SCANS:
            raise ValueError(f"unknown scan {scan!r}; choose 'systematic' (raster order) or 'random'")
        if isinstance(init, str) and init not in INITS:
            raise ValueError(f"unknown init {init!r}; choose 'ancestral', 'uniform' or pass a tensor of hidden values")
        if not isinstance(thin, int) or thin < 1:
            raise ValueError(f"thin must be a positive integer, got {thin!r}")
        if not isinstance(topk, int) or topk < 1:
            raise ValueError(f"topk must be a positive integer, got {topk!r}")
        if not isinstance(max_batch, int) or max_batch < 1:
            raise ValueError(f"max_batch must be a positive integer, got {max_batch!r}")
        if variant != "textbook":
            fast._check_legal(model)
        model.check_images(images, "images")
        self.model = model
        self.images = images.long()
        self.observed = observed.bool()
        self.hidden_mask = ~self.observed
        if not self.hidden_mask.any():
            raise ValueError("every pixel is observed: there is nothing to sample")
        self.target = None if target is None else target.bool()
        if self.target is not None and (self.target & self.observed).any():
            raise ValueError("the target overlaps the observed pixels; a pixel cannot be both given and sampled")
        self.B = images.shape[0]
        self.chains = chains
        self.N = self.B * chains
        self.variant, self.scan, self.init, self.thin = variant, scan, init, thin
        self.topk = min(topk, model.levels)
        self.max_batch = max_batch
        self.sites = _sites(self.hidden_mask)
        self.n_hidden = len(self.sites)
        # columns of the "hidden" vector holding the target pixels (target in C, H, W order)
        hid_flat = self.hidden_mask.flatten()
        col = torch.cumsum(hid_flat.long(), 0) - 1
        self.target_cols = None if self.target is None else col[self.target.flatten()]
        self.target_site = None
        if self.target is not None and int(self.target.sum()) == 1:
            self.target_site = _sites(self.target)[0]
        self._initial = None
        self._warmup = 0

    # ------------------------------------------------------------------ Pyro API
    def setup(self, warmup_steps, *args, **kwargs):
        """Reset all state: counters, records, the chains' starting images and the cache."""
        self._warmup = int(warmup_steps)
        self._calls = 0
        self._accepts = torch.zeros(self.N, dtype=torch.float64)
        self._proposals = 0
        self.candidate_evals = 0  # candidate evaluations, all chains together
        self.full_evals = 0  # full forward passes (images), all chains together
        self.num_updates = 0
        self.records = {k: [] for k in ("target", "rb", "log_joint", "num_on", "acceptance", "evals")}
        if self._initial is None:
            x = self._start()
        else:
            x = self._expand(self._initial)
            self._initial = None
        self._set_state(x)

    @property
    def initial_params(self):
        return {"hidden": self._x()[:, self.hidden_mask].clone()}

    @initial_params.setter
    def initial_params(self, params):
        self._initial = params["hidden"]

    def sample(self, params):
        h = params["hidden"]
        if not torch.equal(h.to(self._x().device).long(), self._x()[:, self.hidden_mask]):
            # someone changed the state between calls: rebuild the cache from it
            x = self._x().clone()
            x[:, self.hidden_mask] = h.long().to(x.device)
            self._set_state(x)
        warm = self._calls < self._warmup
        self._calls += 1
        sweeps = 1 if warm else self.thin
        acc0, ev0 = self._accepts.clone(), self.candidate_evals + self.full_evals
        prop0 = self._proposals
        rb = None
        for _ in range(sweeps):
            self._sweep()
            if not warm and self.target_site is not None:
                p = self._conditional(self.target_site, record=False).exp()
                rb = p if rb is None else rb + p
        if not warm:
            x = self._x()
            rec = self.records
            if self.target_cols is not None:
                rec["target"].append(x[:, self.hidden_mask][:, self.target_cols].cpu())
            if rb is not None:
                rec["rb"].append((rb / sweeps).double().cpu())
            rec["log_joint"].append(self._log_joint().double().cpu())
            rec["num_on"].append((x[:, self.hidden_mask] > self.model.levels / 2).sum(1).cpu())
            n_prop = max(self._proposals - prop0, 1)
            rec["acceptance"].append((self._accepts - acc0) / n_prop)
            rec["evals"].append(torch.full((self.N,), (self.candidate_evals + self.full_evals - ev0) / self.N,
                                           dtype=torch.float64))
        return {"hidden": self._x()[:, self.hidden_mask].clone()}

    def logging(self):
        return {"acc": f"{float(self.acceptance_rate().mean()):.3f}"}

    def diagnostics(self):
        return {"acceptance rate": float(self.acceptance_rate().mean())}

    def acceptance_rate(self):
        """Fraction of accepted proposals so far, per chain (``N``; warm-up included)."""
        return self._accepts / max(self._proposals, 1)

    # ------------------------------------------------------------------ state
    def _start(self):
        dev = self.images.device
        base = self.images.repeat_interleave(self.chains, 0)  # row b * chains + chain
        if isinstance(self.init, str):
            if self.init == "ancestral":
                return self.model.sample(given=base, mask=self.observed)
            x = base.clone()
            u = torch.randint(0, self.model.levels, x.shape, device=dev)
            return torch.where(self.observed, x, u)
        return self._expand(self.init)

    def _expand(self, init):
        """A user's starting values as ``N`` whole images."""
        t = torch.as_tensor(init, device=self.images.device)
        if t.dtype.is_floating_point or t.dtype == torch.bool:
            raise TypeError(f"init must hold integer levels, got dtype {t.dtype}")
        t = t.long()
        C, H, W = self.model.shape
        if t.dim() >= 3 and tuple(t.shape[-3:]) == (C, H, W):
            t = t[..., self.hidden_mask]
        if t.shape[-1] != self.n_hidden:
            raise ValueError(f"init must give the {self.n_hidden} hidden pixels (shape [..., {self.n_hidden}] "
                             f"broadcastable to ({self.B}, {self.chains}, {self.n_hidden})) or whole images; "
                             f"got shape {tuple(t.shape)}")
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= self.model.levels):
            raise ValueError(f"init values must be levels in 0..{self.model.levels - 1}")
        if t.dim() == 2 and t.shape[0] == self.N and self.N not in (self.chains,):
            t = t.view(self.B, self.chains, -1)
        try:
            t = t.expand(self.B, self.chains, self.n_hidden).reshape(self.N, self.n_hidden)
        except RuntimeError:
            raise ValueError(f"init of shape {tuple(t.shape)} does not broadcast to "
                             f"({self.B}, {self.chains}, {self.n_hidden}) (images, chains, hidden pixels)") from None
        x = self.images.repeat_interleave(self.chains, 0).clone()
        x[:, self.hidden_mask] = t
        return torch.where(self.observed, self.images.repeat_interleave(self.chains, 0), x)

    def _set_state(self, x):
        if self.variant == "textbook":
            self._xt = x.clone()
            self._lp = self.model.log_prob(self._xt)
            self.full_evals += self.N
            self.cache = None
        else:
            self.cache = fast.Cache(self.model, x)
            self.full_evals += self.N

    def _x(self):
        return self._xt if self.variant == "textbook" else self.cache.x

    def _log_joint(self):
        return self._lp if self.variant == "textbook" else self.cache.log_joint()

    # ------------------------------------------------------------------ updates
    def _sweep(self):
        if self.scan == "systematic":
            order = range(self.n_hidden)
        else:
            order = torch.randint(0, self.n_hidden, (self.n_hidden,)).tolist()
        update = getattr(self, "_update_" + self.variant)
        for j in order:
            update(self.sites[j])
            self.num_updates += 1

    def _cands(self, site, vals):
        """``N x K x C`` candidate pixel values: the current pixel with channel ``k`` set to ``vals`` (``N x K``)."""
        k, r, c = site
        cur = self._x()[:, :, r, c]  # N x C
        out = cur.unsqueeze(1).expand(-1, vals.shape[1], -1).clone()
        out[:, :, k] = vals
        return out

    def _local(self, site, vals):
        _, r, c = site
        self.candidate_evals += vals.numel()
        return fast.local_logits(self.cache, r, c, self._cands(site, vals))

    def _conditional(self, site, record=True):
        """``log p(x_site = v | rest)`` for every level, ``N x levels`` (no state change)."""
        L = self.model.levels
        if self.variant == "textbook":
            return torch.log_softmax(self._textbook_lp(site), 1)
        step = max(1, self.max_batch // self.N)
        deltas = []
        for v0 in range(0, L, step):
            vals = torch.arange(v0, min(v0 + step, L), device=self.images.device).expand(self.N, -1)
            deltas.append(self._local(site, vals)["delta"])
        self.cache.pending = None
        return torch.log_softmax(torch.cat(deltas, 1), 1)

    @torch.no_grad()
    def _textbook_lp(self, site):
        """``log p(x with x_site = v)`` for every level by full forward passes, ``N x levels``."""
        k, r, c = site
        L = self.model.levels
        out = []
        step = max(1, self.max_batch // self.N)
        for v0 in range(0, L, step):
            v1 = min(v0 + step, L)
            xs = self._xt.unsqueeze(1).repeat(1, v1 - v0, 1, 1, 1)
            xs[:, :, k, r, c] = torch.arange(v0, v1, device=xs.device)
            out.append(self.model.log_prob(xs.flatten(0, 1)).view(self.N, v1 - v0))
            self.full_evals += xs.shape[0] * xs.shape[1]
        return torch.cat(out, 1)

    def _count(self, accepted):
        self._accepts += accepted.double().cpu()
        self._proposals += 1

    def _update_textbook(self, site):
        k, r, c = site
        lp = self._textbook_lp(site)
        v = torch.distributions.Categorical(logits=lp).sample()
        self._xt[:, k, r, c] = v
        self._lp = lp.gather(1, v.view(-1, 1)).squeeze(1)
        self._count(torch.ones(self.N, dtype=torch.bool))

    def _update_exact(self, site):
        L = self.model.levels
        if self.N * L <= self.max_batch:
            vals = torch.arange(L, device=self.images.device).expand(self.N, -1)
            delta = self._local(site, vals)["delta"]
            v = torch.distributions.Categorical(logits=delta).sample()
            fast.commit(self.cache, v)
        else:
            logp = self._conditional(site)
            v = torch.distributions.Categorical(logits=logp).sample()
            # the cache's pending evaluation is gone after chunking: re-evaluate the chosen value
            self._local(site, v.view(-1, 1))
            fast.commit(self.cache, torch.zeros(self.N, dtype=torch.long))
        self._count(torch.ones(self.N, dtype=torch.bool))

    def _prior_conditional(self, site):
        """``log q(v) = log p(x_site = v | x_<site)``, ``N x levels``, read from the cache."""
        k, r, c = site
        return torch.log_softmax(self.cache.logits[:, :, k, r, c], 1)

    def _update_mh(self, site):
        k, r, c = site
        lq = self._prior_conditional(site)
        cur = self.cache.x[:, k, r, c]
        prop = torch.distributions.Categorical(logits=lq).sample()
        delta = self._local(site, torch.stack([prop, cur], 1))["delta"]
        # pi(v')/pi(v) * q(v)/q(v') = L(v')/L(v); delta holds log p(x) changes, q included
        log_alpha = (delta[:, 0] - delta[:, 1]) - (lq.gather(1, prop[:, None]) - lq.gather(1, cur[:, None])).squeeze(1)
        accept = torch.rand(self.N, device=delta.device).log() < log_alpha
        fast.commit(self.cache, torch.where(accept, 0, 1))
        self._count(accept)

    def _update_pruned(self, site):
        k, r, c = site
        N, L, K = self.N, self.model.levels, self.topk
        lq = self._prior_conditional(site)
        cur = self.cache.x[:, k, r, c]
        top = torch.topk(lq, K, dim=1).indices  # N x K
        in_top = torch.zeros(N, L, dtype=torch.bool, device=lq.device).scatter_(1, top, True)
        delta1 = self._local(site, torch.cat([top, cur[:, None]], 1))["delta"]  # N x (K+1)
        lse_top = torch.logsumexp(delta1[:, :K], 1)  # log pi(T) + const
        log_qT = torch.logsumexp(lq.masked_fill(~in_top, -math.inf), 1)  # log (1 - m)
        log_qtail = torch.logsumexp(lq.masked_fill(in_top, -math.inf), 1)  # log m (-inf when T is everything)
        # draw from Q: the top set with prob 1 - m (then pi restricted to T), else q on the tail
        go_tail = torch.rand(N, device=lq.device).log() < (log_qtail - torch.logaddexp(log_qT, log_qtail))
        j_top = torch.distributions.Categorical(logits=delta1[:, :K]).sample()
        prop = top.gather(1, j_top[:, None]).squeeze(1)
        if bool(go_tail.any()):
            tail_draw = torch.distributions.Categorical(logits=lq.masked_fill(in_top, -math.inf)
                                                        .nan_to_num(neginf=-1e30)).sample()
            prop = torch.where(go_tail, tail_draw, prop)

        # log w(v) = log pi(v) - log Q(v) (up to one constant): lse_top - log(1-m) on T, delta - lq on the tail
        def log_w(v, dv):
            on_t = in_top.gather(1, v[:, None]).squeeze(1)
            return torch.where(on_t, lse_top - log_qT, dv - lq.gather(1, v[:, None]).squeeze(1))

        lw_cur = log_w(cur, delta1[:, K])
        if bool(go_tail.any()):
            delta2 = self._local(site, torch.stack([prop, cur], 1))["delta"]
            lw_prop = log_w(prop, delta2[:, 0])
            accept = torch.rand(N, device=lq.device).log() < (lw_prop - lw_cur)
            fast.commit(self.cache, torch.where(accept, 0, 1))
        else:
            lw_prop = lse_top - log_qT  # every proposal is in T
            accept = torch.rand(N, device=lq.device).log() < (lw_prop - lw_cur)
            fast.commit(self.cache, torch.where(accept, j_top, K))
        self._count(accept)


# ---------------------------------------------------------------------- method


def _applies(model, observed, target):
    if model.config.illegal is not None:
        return "Gibbs needs a causal PixelCNN (this one was built illegal)"
    return None


@register("gibbs", kinds=("pixelcnn",), exact=False, applies=_applies)
def solve(model, images, observed, target, num_samples=None, warmup=None, chains=4, variant="exact",
          scan="systematic", init="ancestral", thin=1, topk=16, max_batch=64, warn=True):
    """Gibbs sampling over the hidden pixels (exact, textbook, Metropolised or pruned updates)."""
    from ..diagnostics import build_inference_data, indicator_mcse, level_frequencies, mcmc_diagnostics

    num_samples = 200 if num_samples is None else num_samples
    if not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"num_samples (post-warm-up sweeps per chain) must be a positive integer, got {num_samples!r}")
    warmup = max(10, num_samples // 4) if warmup is None else warmup
    if not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup (sweeps) must be a non-negative integer, got {warmup!r}")
    if isinstance(thin, int) and thin > num_samples:
        raise ValueError(f"thin={thin} keeps no draw of num_samples={num_samples} sweeps")
    kernel = PixelGibbs(model, images, observed, target, chains=chains, variant=variant, scan=scan, init=init,
                        thin=thin, topk=topk, max_batch=max_batch)
    draws = num_samples // thin
    mcmc = MCMC(kernel, num_samples=draws, warmup_steps=warmup, num_chains=1, transforms={},
                disable_progbar=True)
    mcmc.run()
    B, ch, L = kernel.B, chains, model.levels
    T = int(target.sum())
    hidden = mcmc.get_samples(group_by_chain=True)["hidden"]  # 1 x draws x N x n_hidden
    hidden = hidden[0].reshape(draws, B, ch, -1).permute(1, 2, 0, 3)  # B x chains x draws x n_hidden
    tdraws = hidden[..., kernel.target_cols.to(hidden.device)].long().cpu()  # B x chains x draws x T

    def per_chain(name):  # records: draws x N x ... -> B x chains x draws x ...
        t = torch.stack(kernel.records[name])
        return t.reshape(draws, B, ch, *t.shape[2:]).transpose(0, 1).transpose(1, 2)

    rb = per_chain("rb") if kernel.records["rb"] else None
    idata = build_inference_data(
        target=tdraws, log_joint=per_chain("log_joint"), num_on=per_chain("num_on"), rb_probs=rb,
        acceptance=per_chain("acceptance"), evaluations=per_chain("evals"), levels=L,
        target_pixels=[f"{k},{r},{c}" for k, r, c in torch.nonzero(target).tolist()],
        attrs={"method": "gibbs", "variant": variant, "scan": scan, "thin": thin, "warmup": warmup})
    diag = mcmc_diagnostics(idata, warn=warn)
    notes = [f"{variant} Gibbs, {scan} scan: {ch} chains x {draws} draws (thin {thin}) after {warmup} warm-up "
             f"sweeps over {kernel.n_hidden} hidden pixels, per image"]
    if rb is not None:
        probs = rb.mean(2).mean(1).unsqueeze(1)  # B x 1 x L
        stderr = torch.as_tensor(diag.pop("_mcse_rb"), dtype=torch.float64).view(B, 1, L)
        notes.append("answer: Rao-Blackwellised (average of the target's exact full conditional per sweep)")
    else:
        cd = tdraws.permute(1, 2, 0, 3).numpy()  # chains x draws x B x T
        probs = torch.as_tensor(level_frequencies(cd, L))
        stderr = torch.as_tensor(indicator_mcse(cd, L))
        notes.append("answer: frequencies of the joint draws (region target)")
    diag.pop("_mcse_rb", None)
    acc = kernel.acceptance_rate().view(B, ch)
    diag.update({"acceptance_rate": float(acc.mean()), "acceptance_per_chain": acc.tolist(),
                 "candidate_evals": kernel.candidate_evals, "full_evals": kernel.full_evals,
                 "updates": kernel.num_updates,
                 "candidate_evals_per_update": kernel.candidate_evals / max(kernel.num_updates, 1),
                 "variant": variant, "scan": scan, "chains": ch, "draws": draws, "warmup": warmup})
    stderr = torch.nan_to_num(stderr, nan=0.0)
    samples = tdraws.reshape(B, ch * draws, T)
    return result(model, images, observed, target, probs.double(), "gibbs", False, stderr_full=stderr,
                  samples_full=samples, inference_data=idata, diagnostics=diag, notes=notes)

