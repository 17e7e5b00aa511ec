"""PixelCNN: causality, illegal masks, bpd, sampling."""
import math

import pytest
import torch

from pixelprob.models import PixelCNN, check_autoregressive

LEGAL = [
    dict(levels=4, shape=(1, 3, 3), channels=8, layers=2),
    dict(levels=2, shape=(1, 4, 4), channels=8, layers=2, gated=True),
    dict(levels=256, shape=(1, 12, 10), channels=8, layers=3, dilations=[1, 2, 4]),
    dict(levels=3, shape=(2, 5, 6), channels=8, layers=3, kernel_size=5, gated=True),
    dict(levels=16, shape=(1, 7, 7), channels=8, layers=4, kernel_size=3, dilations=[2, 1, 3, 1], gated=True),
]


@pytest.mark.parametrize("kw", LEGAL)
def test_legal_configurations_are_causal(kw):
    torch.manual_seed(0)
    assert check_autoregressive(PixelCNN(**kw)) == []


@pytest.mark.parametrize("variant,pair", [("center", ((0, 0), (0, 0))), ("below", ((0, 0), (1, 0)))])
@pytest.mark.parametrize("gated", [False, True])
def test_illegal_variants_are_detected(variant, pair, gated):
    torch.manual_seed(0)
    bad = check_autoregressive(PixelCNN(levels=4, shape=(1, 5, 5), channels=8, layers=2, gated=gated, illegal=variant))
    assert pair in bad
    # the checker reports pairs whose input is at or after the output in raster order, only
    assert all(i[0] * 5 + i[1] >= o[0] * 5 + o[1] for o, i in bad)


def test_output_shape_and_bpd_by_hand():
    torch.manual_seed(0)
    m = PixelCNN(levels=5, shape=(2, 4, 3), channels=8, layers=2).eval()
    x = torch.randint(0, 5, (3, 2, 4, 3))
    logits = m(x)
    assert logits.shape == (3, 5, 2, 4, 3)
    # hand computation: sum of log softmax at the true value, per image
    lp = torch.zeros(3)
    for b in range(3):
        for k in range(2):
            for r in range(4):
                for c in range(3):
                    lp[b] += torch.log_softmax(logits[b, :, k, r, c], 0)[x[b, k, r, c]]
    assert torch.allclose(m.log_prob(x), lp, atol=1e-4)
    bpd = float(m.calc_likelihood(x))
    assert math.isclose(bpd, float(-lp.mean()) * math.log2(math.e) / 24, rel_tol=1e-5)


@pytest.mark.parametrize("cached", [True, False])
def test_sample_keeps_given_pixels_and_range(cached):
    torch.manual_seed(0)
    m = PixelCNN(levels=7, shape=(1, 5, 5), channels=8, layers=2).eval()
    given = torch.randint(0, 7, (4, 1, 5, 5), dtype=torch.uint8)
    mask = torch.rand(1, 5, 5) < 0.4
    x = m.sample(given=given, mask=mask, cached=cached)
    assert x.dtype == torch.long and x.shape == (4, 1, 5, 5)
    assert int(x.min()) >= 0 and int(x.max()) < 7
    assert torch.equal(x[:, mask], given.long()[:, mask])


def test_sample_errors():
    m = PixelCNN(levels=4, shape=(1, 3, 3), channels=4, layers=1)
    with pytest.raises(ValueError, match="positive number of images"):
        m.sample(0)
    with pytest.raises(ValueError, match="mask needs given"):
        m.sample(2, mask=torch.ones(1, 3, 3, dtype=torch.bool))
    with pytest.raises(TypeError, match="integer levels"):
        m.log_prob(torch.zeros(1, 1, 3, 3))


def test_exact_samples_follow_the_model(tiny_pixelcnn, tiny_oracle):
    """Ancestral samples' first-pixel histogram matches the exact marginal."""
    x = tiny_pixelcnn.sample(4000, generator=torch.Generator().manual_seed(0))
    hist = torch.bincount(x[:, 0, 0, 0], minlength=4).double() / 4000
    truth = tiny_oracle.marginals(x[0], torch.zeros(1, 3, 3, dtype=torch.bool), torch.eye(3, dtype=torch.bool)[None] & (torch.arange(3) == 0)[None, :, None] & (torch.arange(3) == 0)[None, None, :])[0]
    assert (hist - truth).abs().max() < 0.04
