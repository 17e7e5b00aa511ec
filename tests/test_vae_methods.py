"""VAE query methods against quadrature truth on a 1-D-latent VAE (3x3 images, 4 levels).

Queries: d = the middle pixel given the bottom half, g = the top half's
marginals given the bottom half; with nothing observed (ancestral), the middle
pixel and the top half. Each method must land within total variation 0.02 of
the exact answer at the stated budget, and within 5 of its own reported
standard errors (plus 0.005) entry by entry.
"""
import pytest
import torch
from pyro.infer.mcmc.mcmc_kernel import MCMCKernel

import pixelprob as pp
from oracle import tv
from pixelprob.infer.vae_methods import VAEMetropolisWithinGibbs
from vae_tiny import make_tiny_vae, marginals, one_thread

_threads = pytest.fixture(scope="module", autouse=True)(one_thread)

TOL = 0.02
# the budget of each method in these tests
BUDGET = {
    "importance": dict(num_samples=2000),
    "svi": dict(num_samples=2000),
    "nuts": dict(num_samples=100, warmup=60, num_chains=4),
    "mwg": dict(num_samples=400, warmup=200, num_chains=4),
}
QUERIES = {"d": (pp.bottom_half, pp.middle_pixel), "g": (pp.bottom_half, pp.top_half)}


@pytest.fixture(scope="module")
def vae():
    return make_tiny_vae(seed=0)


@pytest.fixture(scope="module")
def image(vae):
    torch.manual_seed(5)
    return vae.sample(1)[0]


def _check(r, truth):
    assert r.probs_full.shape == (1,) + truth.shape
    assert torch.allclose(r.probs_full.sum(-1), torch.ones(1, truth.shape[0], dtype=torch.float64))
    err = tv(r.probs_full[0], truth)
    assert err < TOL, f"{r.method}: total variation {err:.4f} >= {TOL}"
    se = r.stderr_full[0]
    assert ((r.probs_full[0] - truth).abs() <= 5 * se + 0.005).all(), (r.probs_full[0], truth, se)


@pytest.mark.parametrize("method", list(BUDGET))
@pytest.mark.parametrize("q", list(QUERIES))
def test_method_matches_quadrature(vae, image, method, q):
    obs, tgt = QUERIES[q]
    truth = marginals(vae, image, obs.mask(vae.shape), tgt.mask(vae.shape))
    r = pp.query(vae, obs(image), tgt, method=method, seed=0, **BUDGET[method])
    _check(r, truth)
    assert r.samples_full is not None and r.samples_full.shape[0] == 1
    assert r.samples_full.shape[2] == int(tgt.mask(vae.shape).sum())
    assert int(r.samples_full.max()) < vae.levels
    assert r.num_model_evals > 0 and r.inference_data is not None


@pytest.mark.parametrize("tgt", [pp.middle_pixel, pp.top_half])
def test_ancestral_matches_quadrature(vae, image, tgt):
    truth = marginals(vae, image, torch.zeros(vae.shape, dtype=torch.bool), tgt.mask(vae.shape))
    r = pp.query(vae, None, tgt, method="ancestral", num_samples=4000, seed=0)
    _check(r, truth)
    # the joint samples agree with the marginals too
    emp = torch.nn.functional.one_hot(r.samples_full[0], vae.levels).double().mean(0)
    assert tv(emp, truth) < 0.05


def test_ancestral_refuses_evidence(vae, image):
    with pytest.raises(ValueError, match="nothing observed.*Methods that can answer"):
        pp.query(vae, pp.bottom_half(image), pp.middle_pixel, method="ancestral")


def test_importance_with_prior_proposal_and_batch(vae, image):
    torch.manual_seed(7)
    images = torch.stack([image, vae.sample(1)[0]])
    r = pp.query(vae, pp.bottom_half(images), pp.middle_pixel, method="importance", proposal="prior",
                 num_samples=4000, seed=1)
    assert r.probs_full.shape == (2, 1, 4) and r.batched
    for b in range(2):
        truth = marginals(vae, images[b], pp.bottom_half.mask(vae.shape), pp.middle_pixel.mask(vae.shape))
        assert tv(r.probs_full[b], truth) < TOL
    d = r.diagnostics
    assert len(d["ess_per_image"]) == 2 and 0 < d["ess"] <= 4000
    lw = r.inference_data.sample_stats["log_weight"]
    assert lw.dims == ("chain", "draw", "image") and lw.shape == (1, 4000, 2)


def test_importance_reports_evidence(vae, image):
    from vae_tiny import log_px
    mask = pp.bottom_half.mask(vae.shape)
    r = pp.query(vae, pp.bottom_half(image), pp.middle_pixel, method="importance", num_samples=4000)
    exact = float(log_px(vae, image[None], mask)[0])
    assert abs(r.diagnostics["log_evidence"] - exact) < 0.02
    assert r.diagnostics["khat"] < 0.7 and r.diagnostics["ess"] > 1000


def test_nuts_inference_data(vae, image):
    r = pp.query(vae, pp.bottom_half(image), pp.middle_pixel, method="nuts", num_samples=20, warmup=20)
    z = r.inference_data.posterior["z"]
    assert z.shape == (4, 20, 1, 1) and z.dims == ("chain", "draw", "image", "z_dim")
    assert {"r_hat", "ess_bulk", "divergences"} <= set(r.diagnostics)


def test_mwg_is_a_pyro_kernel(vae, image):
    assert issubclass(VAEMetropolisWithinGibbs, MCMCKernel)
    r = pp.query(vae, pp.bottom_half(image), pp.top_half, method="mwg", num_samples=50, warmup=10)
    assert 0 < r.diagnostics["acceptance_rate"] <= 1
    assert r.samples_full.shape == (1, 4 * 50, 4)
    assert r.inference_data.posterior["z"].shape == (4, 50, 1, 1)


def test_svi_reports_convergence_and_history(vae, image):
    r = pp.query(vae, pp.bottom_half(image), pp.middle_pixel, method="svi", num_samples=500)
    d = r.diagnostics
    assert d["stopped_by"].startswith(("plateau", "max_steps"))
    hist = r.inference_data.svi_data["elbo"]
    assert hist.dims == ("step",) and hist.shape[0] == d["steps"]
    assert "ess" in d and "khat" in d
    r2 = pp.query(vae, pp.bottom_half(image), pp.middle_pixel, method="svi", max_steps=20, min_steps=20,
                  guide="normal", num_samples=500)
    assert r2.diagnostics["stopped_by"] == "max_steps (20)"
    truth = marginals(vae, image, pp.bottom_half.mask(vae.shape), pp.middle_pixel.mask(vae.shape))
    assert tv(r2.probs_full[0], truth) < TOL  # reweighting corrects a short fit


@pytest.mark.parametrize("method,opts", [("importance", dict(num_samples=300)), ("svi", dict(num_samples=300)),
                                         ("nuts", dict(num_samples=15, warmup=15, num_chains=2)),
                                         ("mwg", dict(num_samples=50, warmup=10))])
def test_seed_repeats(vae, image, method, opts):
    a = pp.query(vae, pp.bottom_half(image), pp.top_half, method=method, seed=3, **opts)
    b = pp.query(vae, pp.bottom_half(image), pp.top_half, method=method, seed=3, **opts)
    assert torch.equal(a.probs_full, b.probs_full)
    assert torch.equal(a.samples_full, b.samples_full)


def test_clear_errors(vae, image):
    with pytest.raises(ValueError, match="does not support vae models.*Methods that can answer.*importance"):
        pp.query(vae, pp.bottom_half(image), pp.middle_pixel, method="exact")
    with pytest.raises(ValueError, match="proposal must be 'encoder' or 'prior'"):
        pp.query(vae, pp.bottom_half(image), pp.middle_pixel, method="importance", proposal="bogus")
    with pytest.raises(ValueError, match="guide must be 'normal'"):
        pp.query(vae, pp.bottom_half(image), pp.middle_pixel, method="svi", guide="flow")
    assert {"importance", "nuts", "mwg", "svi", "ancestral"} <= set(pp.methods(vae))
