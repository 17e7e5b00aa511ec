"""method="gibbs" against the brute-force oracle on tiny PixelCNNs.

Budgets are stated per test; chains are batched, so many chains cost little
more than one. Tolerances: total variation 0.02 (the acceptance criterion of
issue 6). The invariance tests start chains from exact posterior draws, so a
kernel with the wrong stationary distribution moves them away within one sweep.
"""
import math
import warnings
from collections import Counter

import pyro
import pyro.poutine as poutine
import pytest
import torch
from scipy import stats

import pixelprob as pp
from oracle import tv
from pixelprob.distributions import pixelcnn_query_program
from pixelprob.infer.gibbs import PixelGibbs
from pixelprob.models import fast

VARIANTS = ["exact", "mh", "pruned", "textbook"]
# Evidence images (oracle draws) chosen so that the bottom half moves the answers away from the prior:
# TV(prior, posterior) is 0.044 (top half) / 0.15 (middle pixel) on the tiny model and 0.09 / 0.21 on the
# binary one, so a sampler that ignored the evidence would fail the 0.02 tolerance.
TINY_SEED, BINARY_SEED = 139, 50


@pytest.fixture(autouse=True)
def one_thread():
    # the tiny models' many small convolutions gain nothing from threads, and on a shared 2-core
    # machine two spinning OpenMP threads per process made these tests ~30x slower
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _image(oracle, seed):
    return oracle.sample(1, torch.Generator().manual_seed(seed))[0]


def _gibbs(model, observe, target, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # short chains: ESS < 400 warnings expected
        return pp.query(model, observe, target, method="gibbs", **kw)


def _posterior_hidden(oracle, image, observed, n, seed):
    """``n`` exact posterior draws of the hidden pixels (``n x n_hidden``)."""
    w = oracle.posterior_weights(image, observed)
    idx = torch.multinomial(w.float(), n, replacement=True, generator=torch.Generator().manual_seed(seed))
    return oracle.xs[idx][:, ~observed]


# --------------------------------------------------------------------------- d: middle | bottom half


@pytest.mark.parametrize("variant", VARIANTS)
def test_d_middle_given_bottom_tiny(tiny_pixelcnn, tiny_oracle, variant):
    # budget: 16 chains x 40 sweeps (+10 warm-up); RB answer
    m, o = tiny_pixelcnn, tiny_oracle
    img = _image(o, TINY_SEED)
    obs, tgt = pp.bottom_half.mask(m.shape), pp.middle_pixel.mask(m.shape)
    r = _gibbs(m, pp.bottom_half(img), pp.middle_pixel, num_samples=40, warmup=10, chains=16,
               variant=variant, topk=2, seed=1)
    truth = o.marginals(img, obs, tgt)[0]
    assert r.probs.shape == (m.levels,)
    assert tv(r.probs, truth) < 0.02, (variant, r.probs, truth)
    assert r.stderr.shape == r.probs.shape and bool((r.stderr >= 0).all())
    assert r.samples.shape == (16 * 40,)
    if variant in ("mh", "pruned"):
        assert 0.0 < r.diagnostics["acceptance_rate"] <= 1.0
    else:
        assert r.diagnostics["acceptance_rate"] == 1.0


@pytest.mark.parametrize("variant", ["exact", "mh", "pruned"])
def test_d_middle_given_bottom_binary(binary_pixelcnn, binary_oracle, variant):
    # budget: 16 chains x 40 sweeps (+10 warm-up); pruned with topk=1 keeps only the likelier level
    m, o = binary_pixelcnn, binary_oracle
    img = _image(o, BINARY_SEED)
    obs, tgt = pp.bottom_half.mask(m.shape), pp.middle_pixel.mask(m.shape)
    r = _gibbs(m, pp.bottom_half(img), pp.middle_pixel, num_samples=40, warmup=10, chains=16,
               variant=variant, topk=1, seed=2)
    assert tv(r.probs, o.marginals(img, obs, tgt)[0]) < 0.02


# --------------------------------------------------------------------------- g: top half | bottom half


def _joint_stat_tv(samples, joint, f):
    """TV between the sampled and the exact distribution of the statistic ``f`` of the joint."""
    emp = Counter(f(tuple(s)) for s in samples.tolist())
    ex = Counter()
    for k, p in joint.items():
        ex[f(k)] += p
    n = len(samples)
    return 0.5 * sum(abs(emp.get(k, 0) / n - ex.get(k, 0.0)) for k in set(emp) | set(ex))


@pytest.mark.parametrize("variant", ["exact", "mh", "pruned"])  # textbook: see test_textbook_is_exact_chain
def test_g_top_half_tiny(tiny_pixelcnn, tiny_oracle, variant):
    # budget: 512 chains x 32 sweeps (+8 warm-up) = 16384 joint draws of the 4 top-half pixels
    m, o = tiny_pixelcnn, tiny_oracle
    img = _image(o, TINY_SEED)
    obs, tgt = pp.bottom_half.mask(m.shape), pp.top_half.mask(m.shape)
    r = _gibbs(m, pp.bottom_half(img), pp.top_half, num_samples=32, warmup=8, chains=512, variant=variant,
               topk=2, max_batch=8192, seed=3)
    assert r.probs.shape == (4, m.levels) and r.samples.shape == (512 * 32, 4)
    assert tv(r.probs, o.marginals(img, obs, tgt)) < 0.02
    joint = o.joint(img, obs, tgt)
    # joint samples: the law of two functions of the whole configuration
    assert _joint_stat_tv(r.samples, joint, lambda s: sum(s)) < 0.02
    assert _joint_stat_tv(r.samples, joint, lambda s: (s[0], s[3])) < 0.02


def test_g_top_half_binary_joint(binary_pixelcnn, binary_oracle):
    # budget: 512 chains x 32 sweeps (+8 warm-up), exact variant, random scan
    m, o = binary_pixelcnn, binary_oracle
    img = _image(o, BINARY_SEED)
    obs, tgt = pp.bottom_half.mask(m.shape), pp.top_half.mask(m.shape)
    r = _gibbs(m, pp.bottom_half(img), pp.top_half, num_samples=32, warmup=8, chains=512, scan="random",
               max_batch=8192, seed=4)
    assert tv(r.probs, o.marginals(img, obs, tgt)) < 0.02
    joint = o.joint(img, obs, tgt)
    assert _joint_stat_tv(r.samples, joint, lambda s: sum(s)) < 0.02


def test_textbook_is_exact_chain(tiny_pixelcnn, tiny_oracle):
    # the textbook kernel (full forward passes) and the local one compute the same full conditionals,
    # so from one seed they give the same chain (up to a rare draw where float rounding flips a category):
    # the g-type accuracy of "exact" carries over to "textbook"
    m, o = tiny_pixelcnn, tiny_oracle
    img = _image(o, TINY_SEED)
    kw = dict(num_samples=8, warmup=2, chains=64, max_batch=4096, seed=5)
    a = _gibbs(m, pp.bottom_half(img), pp.top_half, variant="exact", **kw)
    b = _gibbs(m, pp.bottom_half(img), pp.top_half, variant="textbook", **kw)
    assert (a.samples == b.samples).all(1).float().mean() > 0.95
    assert b.diagnostics["full_evals"] > 0 and b.diagnostics["candidate_evals"] == 0


# --------------------------------------------------------------------------- invariance


def _chisquare_p(samples, joint, min_expected=5.0):
    """Chi-square goodness-of-fit p-value of joint samples against exact probabilities (rare cells pooled)."""
    n = len(samples)
    emp = Counter(map(tuple, samples.tolist()))
    keys = sorted(joint, key=joint.get, reverse=True)
    big = [k for k in keys if joint[k] * n >= min_expected]
    obs = [emp.get(k, 0) for k in big]
    exp = [joint[k] * n for k in big]
    rest_o, rest_e = n - sum(obs), n - sum(exp)
    if rest_e >= min_expected:
        obs.append(rest_o)
        exp.append(rest_e)
    else:  # fold the remainder into the last cell
        obs[-1] += rest_o
        exp[-1] += rest_e
    return stats.chisquare(obs, exp).pvalue


@pytest.mark.parametrize("variant", VARIANTS)
def test_one_sweep_from_posterior_stays_posterior(tiny_pixelcnn, tiny_oracle, variant):
    # 8000 chains start at exact posterior draws of all 5 hidden pixels; after one sweep the joint law
    # must still be the posterior (chi-square test), and the chains must have moved
    m, o = tiny_pixelcnn, tiny_oracle
    img = _image(o, TINY_SEED)
    obs = pp.bottom_half.mask(m.shape)
    hid = ~obs
    n = 8000
    start = _posterior_hidden(o, img, obs, n, seed=7)
    r = _gibbs(m, pp.bottom_half(img), pp.from_mask(hid, "hidden"), num_samples=1, warmup=0, chains=n,
               variant=variant, topk=2, init=start.unsqueeze(0), max_batch=1 << 16, seed=8)
    after = r.samples  # n x 5
    assert after.shape == (n, int(hid.sum()))
    assert (after != start).any(1).float().mean() > 0.2  # it moves
    p = _chisquare_p(after, o.joint(img, obs, hid))
    assert p > 1e-3, (variant, p)


def test_invariance_test_catches_a_wrong_kernel(tiny_pixelcnn, tiny_oracle, monkeypatch):
    m, o = tiny_pixelcnn, tiny_oracle
    img = _image(o, TINY_SEED)
    obs = pp.bottom_half.mask(m.shape)
    hid = ~obs
    start = _posterior_hidden(o, img, obs, 8000, seed=7)
    # a "Gibbs" update that samples each pixel from p(x_i | x_<i), ignoring the later factors
    def wrong(self, site):
        k, r, c = site
        v = torch.distributions.Categorical(logits=self._prior_conditional(site)).sample()
        self._local(site, v.view(-1, 1))
        fast.commit(self.cache, torch.zeros(self.N, dtype=torch.long))
        self._count(torch.ones(self.N, dtype=torch.bool))
    monkeypatch.setattr(PixelGibbs, "_update_exact", wrong)
    r = _gibbs(m, pp.bottom_half(img), pp.from_mask(hid, "hidden"), num_samples=1, warmup=0, chains=8000,
               init=start.unsqueeze(0), max_batch=1 << 16, seed=8)
    assert _chisquare_p(r.samples, o.joint(img, obs, hid)) < 1e-3


# --------------------------------------------------------------------------- kernel pieces


def test_exact_conditional_matches_textbook_and_program_density(tiny_pixelcnn, tiny_oracle):
    m, o = tiny_pixelcnn, tiny_oracle
    img = _image(o, 11).unsqueeze(0)
    obs = pp.bottom_half.mask(m.shape)
    fast_k = PixelGibbs(m, img, obs, chains=3, variant="exact", init="uniform")
    book = PixelGibbs(m, img, obs, chains=3, variant="textbook", init="uniform")
    torch.manual_seed(0)
    fast_k.setup(0)
    book.initial_params = fast_k.initial_params
    book.setup(0)
    for site in fast_k.sites:
        assert torch.allclose(fast_k._conditional(site), book._conditional(site), atol=1e-4)
    # the kernel's log joint is the density of the Pyro program's site "hidden"
    h = fast_k.initial_params["hidden"]
    tr = poutine.trace(poutine.condition(pixelcnn_query_program, {"hidden": h})).get_trace(
        m, ~obs, fast_k.cache.x)
    tr.compute_log_prob()
    lp = sum(site["log_prob"] for site in tr.nodes.values() if site["type"] == "sample")
    assert torch.allclose(lp, fast_k.cache.log_joint(), atol=1e-4)


def test_runs_under_pyro_mcmc_and_setup_resets(tiny_pixelcnn, tiny_oracle):
    m, o = tiny_pixelcnn, tiny_oracle
    img = _image(o, TINY_SEED).unsqueeze(0)
    obs = pp.bottom_half.mask(m.shape)
    kern = PixelGibbs(m, img, obs, target=pp.middle_pixel.mask(m.shape), chains=2, variant="mh")
    for _ in range(2):  # a second run on the same kernel object starts from scratch
        mc = pyro.infer.MCMC(kern, num_samples=5, warmup_steps=3, transforms={}, disable_progbar=True)
        mc.run()
        assert mc.get_samples(group_by_chain=True)["hidden"].shape == (1, 5, 2, int((~obs).sum()))
        assert len(kern.records["rb"]) == 5  # warm-up calls are not recorded
        assert kern.num_updates == 8 * int((~obs).sum())


# --------------------------------------------------------------------------- InferenceData, seeds, errors


def test_inference_data_and_diagnostics(tiny_pixelcnn, tiny_oracle):
    m, o = tiny_pixelcnn, tiny_oracle
    imgs = torch.stack([_image(o, TINY_SEED), _image(o, 4)])
    r = _gibbs(m, pp.bottom_half(imgs), pp.middle_pixel, num_samples=30, warmup=5, chains=3, thin=2)
    idata = r.inference_data
    assert set(idata.groups()) == {"posterior", "sample_stats"}
    post = idata.posterior
    assert dict(post["target"].sizes) == {"chain": 3, "draw": 15, "image": 2, "target_pixel": 1}
    assert dict(post["rb_probs"].sizes) == {"chain": 3, "draw": 15, "image": 2, "level": m.levels}
    assert dict(post["log_joint"].sizes) == {"chain": 3, "draw": 15, "image": 2}
    assert "num_on" in post
    assert set(idata.sample_stats.data_vars) == {"acceptance_rate", "evaluations"}
    assert r.probs.shape == (2, m.levels) and r.samples.shape == (2, 45)
    for key in ("max_rhat", "min_ess_bulk", "min_ess_tail", "acceptance_rate", "candidate_evals"):
        assert key in r.diagnostics
    # RB probabilities of each draw are distributions; the answer is their mean
    rb = torch.as_tensor(post["rb_probs"].values)
    assert torch.allclose(rb.sum(-1), torch.ones(()).double(), atol=1e-6)
    assert torch.allclose(rb.mean((0, 1)), r.probs, atol=1e-9)


def test_diagnostics_warn_on_bad_chains():
    from pixelprob.diagnostics import build_inference_data, importance_diagnostics, mcmc_diagnostics
    # two chains stuck at different values: R-hat must flag them
    t = torch.zeros(1, 2, 50, 1, dtype=torch.long)
    t[0, 1] = 1
    t[0, :, ::7] = 1 - t[0, :, ::7]
    idata = build_inference_data(target=t, log_joint=t[..., 0].double(), levels=2, target_pixels=["0,0,0"])
    with pytest.warns(RuntimeWarning, match="R-hat"):
        d = mcmc_diagnostics(idata)
    assert d["max_rhat"] > 1.01
    with pytest.warns(RuntimeWarning, match="k-hat"):
        out = importance_diagnostics(torch.randn(1, 2000) * 8.0)
    assert out["max_khat"] > 0.7 and out["min_ess"] < 2000
    out = importance_diagnostics(torch.zeros(3, 500), warn=False)
    assert abs(out["min_ess"] - 500) < 1e-6


def test_same_seed_same_chain(binary_pixelcnn, binary_oracle):
    m, o = binary_pixelcnn, binary_oracle
    img = _image(o, BINARY_SEED)
    a = _gibbs(m, pp.bottom_half(img), pp.top_half, num_samples=10, warmup=2, chains=2, variant="pruned",
               scan="random", topk=1, seed=9)
    b = _gibbs(m, pp.bottom_half(img), pp.top_half, num_samples=10, warmup=2, chains=2, variant="pruned",
               scan="random", topk=1, seed=9)
    c = _gibbs(m, pp.bottom_half(img), pp.top_half, num_samples=10, warmup=2, chains=2, variant="pruned",
               scan="random", topk=1, seed=10)
    assert torch.equal(a.samples, b.samples)
    assert not torch.equal(a.samples, c.samples)


@pytest.mark.parametrize("opts, match", [
    (dict(chains=0), "chains must be a positive integer"),
    (dict(variant="hmc"), "unknown Gibbs variant 'hmc'"),
    (dict(scan="zigzag"), "unknown scan 'zigzag'"),
    (dict(init="prior"), "unknown init 'prior'"),
    (dict(thin=0), "thin must be a positive integer"),
    (dict(num_samples=0), "num_samples"),
    (dict(init=torch.zeros(3, dtype=torch.long)), "init must give the 5 hidden pixels"),
    (dict(init=torch.full((5,), 9)), "init values must be levels in 0..3"),
])
def test_bad_options(tiny_pixelcnn, tiny_oracle, opts, match):
    img = _image(tiny_oracle, TINY_SEED)
    opts = {"num_samples": 2, "warmup": 0, **opts}
    with pytest.raises(ValueError, match=match):
        pp.query(tiny_pixelcnn, pp.bottom_half(img), pp.middle_pixel, method="gibbs", **opts)


def test_observed_target_is_refused(tiny_pixelcnn, tiny_oracle):
    img = _image(tiny_oracle, TINY_SEED)
    with pytest.raises(ValueError, match="overlap"):
        pp.query(tiny_pixelcnn, pp.bottom_half(img), pp.pixel(2, 2), method="gibbs", num_samples=2)


def test_trace_and_rank_plots(tiny_pixelcnn, tiny_oracle, tmp_path):
    img = _image(tiny_oracle, TINY_SEED)
    r = _gibbs(tiny_pixelcnn, pp.bottom_half(img), pp.middle_pixel, num_samples=20, warmup=2, chains=2)
    pp.plot_trace(r, tmp_path / "trace.png")
    pp.plot_rank(r, tmp_path / "rank.png")
    assert (tmp_path / "trace.png").stat().st_size > 1000 and (tmp_path / "rank.png").stat().st_size > 1000
    exact = pp.query(tiny_pixelcnn, None, pp.first_pixel, method="exact")
    with pytest.raises(ValueError, match="no inference_data"):
        pp.plot_trace(exact)
