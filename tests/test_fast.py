"""Fast paths give the same results as the textbook computations."""
import pytest
import torch

from pixelprob.models import PixelCNN
from pixelprob.models import fast

CONFIGS = [
    dict(levels=4, shape=(1, 3, 3), channels=8, layers=2),
    dict(levels=2, shape=(1, 4, 4), channels=8, layers=2, gated=True),
    dict(levels=256, shape=(1, 10, 9), channels=8, layers=3, dilations=[1, 2, 3]),
    dict(levels=5, shape=(2, 6, 5), channels=8, layers=3, kernel_size=5, gated=True),
    dict(levels=256, shape=(1, 28, 28), channels=16, layers=3, gated=True),
]


@pytest.mark.parametrize("kw", CONFIGS)
def test_cached_sampler_identical_to_naive(kw):
    torch.manual_seed(0)
    m = PixelCNN(**kw).eval()
    n = 3
    a = m.sample(n, generator=torch.Generator().manual_seed(7), cached=False)
    b = m.sample(n, generator=torch.Generator().manual_seed(7), cached=True)
    assert torch.equal(a, b)
    given = m.sample(n, generator=torch.Generator().manual_seed(8))
    mask = torch.rand(m.shape, generator=torch.Generator().manual_seed(9)) < 0.3
    a = m.sample(given=given, mask=mask, generator=torch.Generator().manual_seed(1), cached=False)
    b = m.sample(given=given, mask=mask, generator=torch.Generator().manual_seed(1), cached=True)
    assert torch.equal(a, b)


@pytest.mark.parametrize("kw", CONFIGS)
def test_local_reevaluation_matches_full(kw):
    torch.manual_seed(1)
    m = PixelCNN(**kw).eval()
    C, H, W = m.shape
    x = m.sample(2)
    cache = fast.Cache(m, x)
    g = torch.Generator().manual_seed(3)
    positions = [(0, 0), (H - 1, W - 1), (H // 2, W // 2), (0, W - 1), (H - 1, 0)]
    positions += [(int(torch.randint(H, (1,), generator=g)), int(torch.randint(W, (1,), generator=g))) for _ in range(3)]
    for r, c in positions:
        K = 5
        vals = torch.randint(0, m.levels, (2, K, C), generator=g)
        out = fast.local_logits(cache, r, c, vals)
        xs = cache.x.unsqueeze(1).repeat(1, K, 1, 1, 1)
        xs[:, :, :, r, c] = vals
        full_lp = m.log_prob(xs.view(-1, C, H, W)).view(2, K)
        ref = full_lp - m.log_prob(cache.x).view(2, 1)
        assert torch.allclose(out["delta"], ref, atol=2e-3, rtol=1e-4), (r, c)
        # the returned conditionals equal the full forward pass on their window
        full_logits = m(xs.view(-1, C, H, W)).view(2, K, m.levels, C, H, W)
        r0, r1, c0, c1 = out["rect"]
        assert torch.allclose(out["logits"], full_logits[..., r0:r1, c0:c1], atol=1e-4)
        # commit a random choice; the cache must equal a fresh one
        fast.commit(cache, torch.randint(0, K, (2,), generator=g))
        fresh = fast.Cache(m, cache.x)
        for k in fresh.acts:
            assert torch.allclose(fresh.acts[k], cache.acts[k], atol=1e-4), k
        assert torch.allclose(fresh.logp, cache.logp, atol=1e-4)


def test_full_conditional_is_normalised_enumeration(tiny_pixelcnn):
    x = tiny_pixelcnn.sample(3)
    cache = fast.Cache(tiny_pixelcnn, x)
    logp, delta = fast.full_conditional(cache, 1, 1)
    assert torch.allclose(logp.exp().sum(1), torch.ones(3))
    xs = x.unsqueeze(1).repeat(1, 4, 1, 1, 1)
    xs[:, :, 0, 1, 1] = torch.arange(4)
    joint = tiny_pixelcnn.log_prob(xs.view(-1, 1, 3, 3)).view(3, 4)
    assert torch.allclose(logp, torch.log_softmax(joint, 1), atol=1e-5)


def test_fast_paths_refuse_illegal_models():
    m = PixelCNN(levels=4, shape=(1, 3, 3), channels=4, layers=1, illegal="center")
    with pytest.raises(ValueError, match="causal"):
        fast.Cache(m, torch.zeros(1, 1, 3, 3, dtype=torch.long))
