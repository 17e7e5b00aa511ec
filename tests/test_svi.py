"""method="svi" on PixelCNNs: learned guides plus importance weighting, checked against the oracle.

Budgets stated in each test: a per-query guide fitted with RWS (default
settings) and ``num_samples`` importance draws.
"""
import math

import pytest
import torch

import pixelprob as pp
from oracle import tv
from pixelprob.infer import guides as G
from pixelprob.infer.svi import fit_guide

SMALL = dict(channels=16, layers=2, cond_channels=16, cond_dilations=[1, 2])


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny tensors gain nothing from intra-op threads, and on a busy machine two threads
    waiting on each other cost far more than they save (tens of times here)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _image(oracle, seed):
    return oracle.sample(1, generator=torch.Generator().manual_seed(seed))[0]


@pytest.fixture(scope="module")
def tiny_guide(tiny_pixelcnn):
    """An amortised guide for the 3x3 model, pattern top_half|bottom_half (CSIS, ~2 s)."""
    return G.train_guide(tiny_pixelcnn, "top_half", steps=150, batch_size=256, lr=1e-2, num_heldout=0,
                         arch=SMALL, seed=0)


@pytest.mark.parametrize("which", ["tiny", "binary"])
def test_d_query_middle_given_bottom_half(which, request):
    """Query d: the middle pixel given the bottom half, within TV 0.02 of the oracle (2000 draws)."""
    model = request.getfixturevalue(f"{which}_pixelcnn")
    oracle = request.getfixturevalue(f"{which}_oracle")
    for seed in (0,):
        img = _image(oracle, seed)
        r = pp.query(model, pp.bottom_half(img), pp.middle_pixel, method="svi", num_samples=2000, seed=seed)
        exact = oracle.marginals(img, pp.bottom_half.mask(model.shape), pp.middle_pixel.mask(model.shape))[0]
        assert tv(r.probs, exact) < 0.02, (which, seed, r.probs, exact)
        d = r.diagnostics
        assert d["guide"] == "per-query" and d["stopped_by"] in ("converged", "max_steps")
        assert d["rao_blackwell"] == "all" and d["ess"] > 100
        # the fit's history is in the InferenceData, one entry per step
        hist = r.inference_data.svi_data
        assert hist["loss"].dims == ("step",) and hist.sizes["step"] == d["fit_steps"]
        # log p(evidence) estimate against the oracle
        w = oracle.posterior_weights(img, pp.bottom_half.mask(model.shape))
        log_ev = math.log(float((oracle.p * (w > 0)).sum()))
        assert abs(d["log_evidence"] - log_ev) < 0.05


@pytest.mark.parametrize("which", ["tiny", "binary"])
def test_g_query_top_half_marginals(which, request):
    """Query g: every top-half pixel's marginal given the bottom half, TV < 0.02 (20000 draws)."""
    model = request.getfixturevalue(f"{which}_pixelcnn")
    oracle = request.getfixturevalue(f"{which}_oracle")
    img = _image(oracle, 3)
    obs, tgt = pp.bottom_half.mask(model.shape), pp.top_half.mask(model.shape)
    r = pp.query(model, pp.bottom_half(img), pp.top_half, method="svi", num_samples=20000, seed=0)
    exact = oracle.marginals(img, obs, tgt)
    assert tv(r.probs_full[0], exact) < 0.02
    assert r.samples_full.shape == (1, 20000, int(tgt.sum()))
    assert r.diagnostics["rao_blackwell"] == "none"
    # resampled joint draws follow the exact joint of the target (checked on the likeliest configuration)
    joint = oracle.joint(img, obs, tgt)
    best = max(joint, key=joint.get)
    freq = float((r.samples_full[0] == torch.tensor(best)).all(1).double().mean())
    assert abs(freq - joint[best]) < 0.03


def test_amortised_guide_learns(tiny_pixelcnn, tiny_oracle, tiny_guide):
    """CSIS raises E_p[log q(hidden | observed)] on fresh exact joint draws to near its optimum, -H(hidden | observed)."""
    model = tiny_pixelcnn
    fresh = tiny_oracle.sample(20000, generator=torch.Generator().manual_seed(7))
    untrained = G.new_guide(model, "top_half", **SMALL)
    before, after = G.heldout_log_q(untrained, fresh), G.heldout_log_q(tiny_guide, fresh)
    # the optimum: the exact conditional entropy, from the oracle
    obs = tiny_guide.observed_mask
    xs, p = tiny_oracle.xs, tiny_oracle.p
    key = xs[:, obs] @ (model.levels ** torch.arange(int(obs.sum())))
    p_obs = torch.zeros(model.levels ** int(obs.sum()), dtype=torch.float64).index_add_(0, key, p)
    best = float((p * (p.log() - p_obs[key].log())).sum())
    assert before == pytest.approx(-tiny_guide.num_hidden * math.log(model.levels), abs=1e-4)  # uniform start
    assert after > before + 0.15
    assert after > best - 0.05
    assert len(tiny_guide.meta["loss"]) == 150


def test_amortised_guide_answers_queries(tiny_pixelcnn, tiny_oracle, tiny_guide):
    model, oracle = tiny_pixelcnn, tiny_oracle
    img = _image(oracle, 11)
    r = pp.query(model, pp.bottom_half(img), pp.middle_pixel, method="svi", guide=tiny_guide, num_samples=2000)
    exact = oracle.marginals(img, pp.bottom_half.mask(model.shape), pp.middle_pixel.mask(model.shape))[0]
    assert tv(r.probs, exact) < 0.02
    assert r.diagnostics["guide"] == "given" and r.diagnostics["fit_steps"] == 0
    # no model evaluation went into fitting: draws (log p) plus full conditionals only
    assert r.num_model_evals == 2000 + 2000 * model.levels


def test_guide_sampler_is_its_density(tiny_pixelcnn, tiny_guide):
    """The cached ancestral sampler clamps observed pixels and reports the same log q as teacher forcing."""
    img = tiny_pixelcnn.sample(1)
    x, lq = tiny_guide.sample(img.expand(500, -1, -1, -1))
    obs = tiny_guide.observed_mask
    assert (x[:, obs] == img[:, obs]).all()
    assert torch.allclose(lq.flatten(1).sum(1), tiny_guide.log_q(x).detach(), atol=1e-4)
    # q(x_i | .) does not depend on hidden pixels after i: change the last hidden pixel only
    last = tiny_guide.last_hidden
    _, H, W = tiny_pixelcnn.shape
    y = x.clone()
    y[:, 0, last // W, last % W] = (y[:, 0, last // W, last % W] + 1) % tiny_pixelcnn.levels
    a, b = tiny_guide.log_q_pixels(x).detach(), tiny_guide.log_q_pixels(y).detach()
    before = torch.ones(H * W, dtype=torch.bool)
    before[last:] = False
    assert torch.allclose(a[:, 0].flatten(1)[:, before], b[:, 0].flatten(1)[:, before], atol=1e-5)
    # and it sums to one over the hidden configurations (5 hidden pixels, 4 levels: 1024 of them)
    hid = tiny_guide.hidden_mask
    n = int(hid.sum())
    grid = torch.cartesian_prod(*[torch.arange(tiny_pixelcnn.levels)] * n)
    full = img.expand(len(grid), -1, -1, -1).clone()
    full[:, hid] = grid
    assert float(torch.logsumexp(tiny_guide.log_q(full).detach().double(), 0)) == pytest.approx(0.0, abs=1e-4)


class PosteriorGuide:
    """The exact posterior over the hidden pixels, from the oracle, behaving as a guide."""

    def __init__(self, oracle, observed):
        self.oracle, self.observed = oracle, observed

    def check(self, model, observed):
        pass

    def _post(self, image):
        return self.oracle.posterior_weights(image, self.observed)

    def sample(self, images):
        w = self._post(images[0])
        idx = torch.multinomial(w.float(), images.shape[0], replacement=True)
        x = self.oracle.xs[idx].clone()
        return x, self.log_q(x)

    def log_q(self, x):
        w = self._post(x[0])
        key = lambda t: (t.flatten(1) * (self.oracle.model.levels ** torch.arange(t[0].numel()))).sum(1)
        order = torch.argsort(key(self.oracle.xs))
        pos = order[torch.searchsorted(key(self.oracle.xs)[order], key(x))]
        return w[pos].log()


@pytest.mark.parametrize("target", ["middle_pixel", "top_half"])
def test_exact_posterior_proposal_gives_equal_weights(binary_pixelcnn, binary_oracle, target):
    """With q = p(hidden | observed), log w = log p(observed) for every draw: ESS = S, k-hat irrelevant."""
    model, oracle = binary_pixelcnn, binary_oracle
    obs = pp.bottom_half.mask(model.shape)
    img = _image(oracle, 5)
    r = pp.query(model, pp.bottom_half(img), target, method="svi", num_samples=500,
                 guide=PosteriorGuide(oracle, obs))
    lw = torch.as_tensor(r.inference_data.sample_stats["log_weight"].values).flatten()
    log_ev = math.log(float((oracle.p * (oracle.posterior_weights(img, obs) > 0)).sum()))
    assert lw.shape == (500,)
    assert torch.allclose(lw, torch.full_like(lw, log_ev), atol=1e-4)
    assert r.diagnostics["ess"] == pytest.approx(500, rel=1e-6)
    assert r.diagnostics["log_evidence"] == pytest.approx(log_ev, abs=1e-4)


def test_refuses_guide_for_another_model_or_pattern(tiny_pixelcnn, binary_pixelcnn, binary_oracle, tiny_guide,
                                                    tmp_path):
    img = _image(binary_oracle, 0)
    with pytest.raises(ValueError, match="another model"):
        pp.query(binary_pixelcnn, pp.bottom_half(img), pp.middle_pixel, method="svi", guide=tiny_guide)
    timg = tiny_pixelcnn.sample(1)[0]
    with pytest.raises(ValueError, match="evidence pattern 'top_half\\|bottom_half'"):
        pp.query(tiny_pixelcnn, pp.rows(2, 3)(timg), pp.middle_pixel, method="svi", guide=tiny_guide)
    # the same through a saved checkpoint (which loads with weights_only=True)
    path = tmp_path / "guide.pt"
    tiny_guide.save(path)
    ck = torch.load(path, weights_only=True)
    assert ck["pattern"] == "top_half|bottom_half" and ck["fingerprint"] == G.model_fingerprint(tiny_pixelcnn)
    with pytest.raises(ValueError, match="another model"):
        pp.query(binary_pixelcnn, pp.bottom_half(img), pp.middle_pixel, method="svi", guide=str(path))
    # a changed weight is another model too
    other = type(tiny_pixelcnn)(tiny_pixelcnn.config)
    other.load_state_dict(tiny_pixelcnn.state_dict())
    with torch.no_grad():
        other.out2.bias[0] += 1e-3
    with pytest.raises(ValueError, match="another model"):
        G.AutoregressiveGuide.load(path).check(other)
    G.AutoregressiveGuide.load(path).check(tiny_pixelcnn, pp.bottom_half.mask(tiny_pixelcnn.shape))


def test_shipped_guide_is_found_only_for_its_model_and_pattern(tiny_pixelcnn, tiny_oracle, tiny_guide, tmp_path,
                                                               monkeypatch):
    import pixelprob.checkpoint as ck
    import pixelprob.infer.svi as svi
    tiny_guide.save(tmp_path / "guide-tiny-top_half.pt")
    monkeypatch.setattr(ck, "WEIGHTS_DIR", tmp_path)
    monkeypatch.setattr(svi, "_SHIPPED", {})
    img = _image(tiny_oracle, 4)
    r = pp.query(tiny_pixelcnn, pp.bottom_half(img), pp.middle_pixel, method="svi", num_samples=500)
    assert r.diagnostics["guide"] == "shipped:guide-tiny-top_half.pt"
    assert r.inference_data.svi_data.attrs["objective"] == "csis"
    # another pattern: no shipped guide applies, so one is fitted for the query
    r = pp.query(tiny_pixelcnn, pp.rows(2, 3)(img), pp.middle_pixel, method="svi", num_samples=200, max_steps=60)
    assert r.diagnostics["guide"] == "per-query"


def test_elbo_objective_and_plot(tiny_pixelcnn, tiny_oracle, tmp_path):
    """TraceGraph_ELBO fits run, record their history, stop by a stated rule, and plot."""
    img = _image(tiny_oracle, 6)
    r = pp.query(tiny_pixelcnn, pp.bottom_half(img), pp.middle_pixel, method="svi", objective="elbo",
                 num_samples=300, max_steps=80)
    d = r.diagnostics
    assert d["stopped_by"] in ("converged", "max_steps") and 0 < d["fit_steps"] <= 80
    assert r.inference_data.svi_data.attrs["objective"] == "elbo"
    fig = pp.plot_elbo(r, path=tmp_path / "elbo.png")
    assert (tmp_path / "elbo.png").stat().st_size > 0 and fig is not None
    with pytest.raises(ValueError, match="svi_data"):
        pp.plot_elbo(pp.query(tiny_pixelcnn, None, pp.first_pixel, method="exact"))


def test_max_steps_and_bad_options(tiny_pixelcnn):
    img = tiny_pixelcnn.sample(1)[0]
    obs = pp.bottom_half.mask(tiny_pixelcnn.shape)
    images = torch.where(obs, img, torch.zeros_like(img)).unsqueeze(0)
    _, fit = fit_guide(tiny_pixelcnn, images, obs, max_steps=10, min_steps=50)
    assert fit["stopped_by"] == "max_steps" and fit["steps"] == 10
    with pytest.raises(ValueError, match="objective must be"):
        pp.query(tiny_pixelcnn, pp.bottom_half(img), pp.middle_pixel, method="svi", objective="kl")
    with pytest.raises(ValueError, match="needs a one-pixel target"):
        pp.query(tiny_pixelcnn, pp.bottom_half(img), pp.top_half, method="svi", rb="all", max_steps=10)
    with pytest.raises(ValueError, match="num_samples"):
        pp.query(tiny_pixelcnn, pp.bottom_half(img), pp.middle_pixel, method="svi", num_samples=1)
    with pytest.raises(ValueError, match="unknown evidence pattern"):
        G.new_guide(tiny_pixelcnn, "left_half")


def test_batched_evidence_fits_one_rws_guide_per_image(binary_pixelcnn, binary_oracle, tmp_path):
    """A batch of evidence images is answered in one call; RWS fits a guide per image."""
    model, oracle = binary_pixelcnn, binary_oracle
    imgs = torch.stack([_image(oracle, s) for s in (8, 9)])
    obs, mid = pp.bottom_half.mask(model.shape), pp.middle_pixel.mask(model.shape)
    r = pp.query(model, pp.bottom_half(imgs), pp.middle_pixel, method="svi", num_samples=1000)
    assert r.probs.shape == (2, model.levels)
    for b in range(2):
        assert tv(r.probs[b], oracle.marginals(imgs[b], obs, mid)[0]) < 0.02
    assert r.inference_data.svi_data["loss"].dims == ("image", "step")
    assert len(r.diagnostics["ess_per_image"]) == 2
    pp.plot_elbo(r, path=tmp_path / "elbo2.png")


def test_finetuning_an_amortised_guide_leaves_it_unchanged(tiny_pixelcnn, tiny_oracle, tiny_guide):
    img = _image(tiny_oracle, 12)
    before = {k: v.clone() for k, v in tiny_guide.state_dict().items()}
    r = pp.query(tiny_pixelcnn, pp.bottom_half(img), pp.middle_pixel, method="svi", guide=tiny_guide,
                 finetune=20, num_samples=2000)
    assert r.diagnostics["guide"] == "given+finetune(20)" and r.diagnostics["fit_steps"] == 20
    assert r.inference_data.svi_data.sizes["step"] == 20
    exact = tiny_oracle.marginals(img, pp.bottom_half.mask(tiny_pixelcnn.shape), pp.middle_pixel.mask(tiny_pixelcnn.shape))[0]
    assert tv(r.probs, exact) < 0.02
    assert all(torch.equal(before[k], v) for k, v in tiny_guide.state_dict().items())


class PointGuide:
    """A collapsed guide: always the same hidden configuration, with probability one."""

    def check(self, model, observed):
        pass

    def sample(self, images):
        return images.clone(), torch.zeros(images.shape[0])

    def log_q(self, x):
        return torch.zeros(x.shape[0])


def test_collapsed_guide_is_flagged(tiny_pixelcnn):
    """Equal weights from a point-mass guide give ESS = S; the distinct-draw count exposes it."""
    img = tiny_pixelcnn.sample(1)[0]
    with pytest.warns(RuntimeWarning, match="collapsed"):
        r = pp.query(tiny_pixelcnn, pp.bottom_half(img), pp.top_half, method="svi", guide=PointGuide(),
                     num_samples=100)
    assert r.diagnostics["ess"] == pytest.approx(100) and r.diagnostics["distinct_draws"] == 1
