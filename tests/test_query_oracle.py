"""Every issue-4 method against the brute-force oracle, on every question a-g (transposed to tiny images)."""
import pytest
import torch

import pixelprob as pp
from oracle import tv

QUESTIONS = {
    # name: (observed region, target region)
    "a_first": (pp.nothing, pp.first_pixel),
    "b_middle": (pp.nothing, pp.middle_pixel),
    "c_middle_given_top": (pp.top_half, pp.middle_pixel),
    "d_middle_given_bottom": (pp.bottom_half, pp.middle_pixel),
    "e_middle_given_rest": (~pp.middle_pixel, pp.middle_pixel),
    "f_bottom_given_top": (pp.top_half, pp.bottom_half),
    "g_top_given_bottom": (pp.bottom_half, pp.top_half),
}

# which methods answer which question (others must refuse, see test_refusals)
EXACT = {"exact": ["a_first", "c_middle_given_top", "e_middle_given_rest"],
         "enumerate": list(QUESTIONS)}
MONTE_CARLO = {"ancestral": ["a_first", "b_middle", "c_middle_given_top", "f_bottom_given_top"],
               "importance": list(QUESTIONS),
               # e observes all but one pixel: exact matches are too rare (see test_rejection_refuses_rare_evidence)
               "rejection": [q for q in QUESTIONS if q != "e_middle_given_rest"]}


def _truth(oracle, images, obs, tgt):
    return torch.stack([oracle.marginals(img, obs, tgt) for img in images])


@pytest.fixture(params=["tiny", "binary"])
def setup(request, tiny_pixelcnn, tiny_oracle, binary_pixelcnn, binary_oracle):
    model, oracle = (tiny_pixelcnn, tiny_oracle) if request.param == "tiny" else (binary_pixelcnn, binary_oracle)
    images = oracle.sample(2, generator=torch.Generator().manual_seed(5))
    return model, oracle, images


@pytest.mark.parametrize("method,question", [(m, q) for m, qs in EXACT.items() for q in qs])
def test_exact_methods_match_oracle(setup, method, question):
    model, oracle, images = setup
    obs, tgt = QUESTIONS[question]
    r = pp.query(model, observe=obs(images), target=tgt, method=method)
    truth = _truth(oracle, images, obs.mask(model.shape), tgt.mask(model.shape))
    assert r.exact
    assert torch.allclose(r.probs_full, truth, atol=2e-5), (r.probs_full, truth)


@pytest.mark.parametrize("method,question", [(m, q) for m, qs in MONTE_CARLO.items() for q in qs])
def test_monte_carlo_methods_match_oracle(setup, method, question):
    model, oracle, images = setup
    obs, tgt = QUESTIONS[question]
    # rejection pays about 1/p(evidence) draws per accepted sample: a smaller budget keeps it fast
    n = 500 if method == "rejection" else 2000
    r = pp.query(model, observe=obs(images), target=tgt, method=method, num_samples=n, seed=1)
    truth = _truth(oracle, images, obs.mask(model.shape), tgt.mask(model.shape))
    assert not r.exact
    err = (r.probs_full - truth).abs()
    # within 5 reported standard errors (plus float slack): a wrong answer or a wrong stderr fails
    assert (err <= 5 * r.stderr_full + 2e-3).all(), (err.max(), r.stderr_full.max())
    assert tv(r.probs_full, truth) < 0.08


def test_joint_samples_match_oracle_joint(tiny_pixelcnn, tiny_oracle):
    """f: ancestral joint samples of the bottom half given the top half follow the exact joint."""
    img = tiny_oracle.sample(1, generator=torch.Generator().manual_seed(2))[0]
    S = tiny_pixelcnn.shape
    obs, tgt = pp.top_half.mask(S), pp.bottom_half.mask(S)
    r = pp.query(tiny_pixelcnn, observe=pp.top_half(img), target=pp.bottom_half, method="ancestral",
                 num_samples=4000, seed=0)
    joint = tiny_oracle.joint(img, obs, tgt)
    counts = {}
    for row in r.samples.tolist():
        counts[tuple(row)] = counts.get(tuple(row), 0) + 1
    keys = set(joint) | set(counts)
    tv_joint = 0.5 * sum(abs(joint.get(k, 0) - counts.get(k, 0) / 4000) for k in keys)
    # 4^4 = 256 joint cells with 4000 draws: the sampling noise alone gives TV ~ 0.1
    assert tv_joint < 0.16
    # and the enumerate method's samples for g follow the exact joint of the top half
    r2 = pp.query(tiny_pixelcnn, observe=pp.bottom_half(img), target=pp.top_half, method="enumerate",
                  num_samples=4000, seed=0)
    joint2 = tiny_oracle.joint(img, pp.bottom_half.mask(S), pp.top_half.mask(S))
    c2 = {}
    for row in r2.samples.tolist():
        c2[tuple(row)] = c2.get(tuple(row), 0) + 1
    keys = set(joint2) | set(c2)
    assert 0.5 * sum(abs(joint2.get(k, 0) - c2.get(k, 0) / 4000) for k in keys) < 0.16


def test_properties(tiny_pixelcnn, tiny_oracle):
    img = tiny_oracle.sample(3, generator=torch.Generator().manual_seed(3))
    for method in ["enumerate", "importance", "rejection"]:
        r = pp.query(tiny_pixelcnn, observe=pp.bottom_half(img), target=pp.top_half, method=method,
                     num_samples=200)
        assert torch.allclose(r.probs_full.sum(-1), torch.ones(3, 4, dtype=torch.float64), atol=1e-9)
        if r.samples_full is not None:
            full = r.sample_images()
            obs = pp.bottom_half.mask(tiny_pixelcnn.shape)
            assert torch.equal(full[:, :, obs], img[:, obs].unsqueeze(1).expand(-1, full.shape[1], -1))
    # observed pixels are never changed by the sampler either
    x = tiny_pixelcnn.sample(50, given=img[:1].expand(50, -1, -1, -1), mask=pp.bottom_half.mask(tiny_pixelcnn.shape))
    assert torch.equal(x[:, pp.bottom_half.mask(tiny_pixelcnn.shape)],
                       img[:1, pp.bottom_half.mask(tiny_pixelcnn.shape)].expand(50, -1))


def test_auto_picks_exact_and_says_why(tiny_pixelcnn, tiny_oracle):
    img = tiny_oracle.sample(1)[0]
    r = pp.query(tiny_pixelcnn, observe=pp.top_half(img), target=pp.middle_pixel)
    assert r.method == "exact" and r.exact and "auto chose 'exact'" in r.notes[0]
    r = pp.query(tiny_pixelcnn, observe=pp.bottom_half(img), target=pp.middle_pixel)
    assert r.method == "enumerate" and "exact" in r.notes[0]


def test_unbatched_shapes(tiny_pixelcnn, tiny_oracle):
    img = tiny_oracle.sample(1)[0]
    r = pp.query(tiny_pixelcnn, observe=pp.top_half(img), target=pp.middle_pixel)
    assert r.probs.shape == (4,)
    r = pp.query(tiny_pixelcnn, observe=pp.top_half(img), target=pp.bottom_half, method="enumerate")
    assert r.probs.shape == (4, 4)
    r = pp.query(tiny_pixelcnn, observe=pp.top_half(img[None].expand(3, -1, -1, -1)), target=pp.middle_pixel)
    assert r.probs.shape == (3, 4) and r.batched


def test_rejection_refuses_rare_evidence(tiny_pixelcnn, tiny_oracle):
    img = tiny_oracle.sample(1, generator=torch.Generator().manual_seed(5))[0]
    with pytest.raises(RuntimeError, match="too improbable for exact matching"):
        pp.query(tiny_pixelcnn, observe=(~pp.middle_pixel)(img), target=pp.middle_pixel, method="rejection",
                 num_samples=500, max_draws=100_000)
