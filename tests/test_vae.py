"""The VAE: bounds against quadrature truth, the Pyro program against the native code, training, checkpoints, errors."""
import math

import pyro
import pytest
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO

import pixelprob as pp
from pixelprob.models import VAE, VAEConfig
from vae_tiny import log_px, make_tiny_vae, one_thread

_threads = pytest.fixture(scope="module", autouse=True)(one_thread)


@pytest.fixture(scope="module")
def tiny():
    return make_tiny_vae(seed=0)


@pytest.fixture(scope="module")
def rough():
    """The same kind of model with an untrained encoder: clear gaps between the bounds."""
    return make_tiny_vae(seed=1, encoder_steps=0)


def test_bounds_order_elbo_iwae_truth(rough):
    """E[ELBO] <= E[IWAE_10] <= E[IWAE_100] <= log p(x), each step beyond Monte Carlo error."""
    torch.manual_seed(0)
    x = rough.sample(12)
    truth = log_px(rough, x)
    R = 400
    B = x.shape[0]
    with torch.no_grad():  # replicates as one batch: R x B
        elbo = rough.elbo(x.repeat(R, 1, 1, 1)).view(R, B)
        k10 = rough.iwae_bound(x.repeat(R // 2, 1, 1, 1), 10).view(R // 2, B)
        k100 = rough.iwae_bound(x.repeat(R // 5, 1, 1, 1), 100).view(R // 5, B)
    means = [t.mean().item() for t in (elbo, k10, k100)]
    ses = [t.mean(1).std().item() / math.sqrt(t.shape[0]) for t in (elbo, k10, k100)]
    assert means[0] < means[1] - 3 * math.hypot(ses[0], ses[1]), (means, ses)
    assert means[1] < means[2] - 3 * math.hypot(ses[1], ses[2]), (means, ses)
    assert means[2] <= truth.mean().item() + 3 * ses[2], (means, truth.mean())


def test_iwae_close_to_quadrature_for_large_k(tiny):
    """IWAE with k = 20,000, decoded in chunks of 512 draws: within 0.03 nats of log p(x) by quadrature."""
    torch.manual_seed(1)
    x = tiny.sample(8)
    truth = log_px(tiny, x)
    est = tiny.iwae_bound(x, 20000, chunk=512)
    assert (est - truth).abs().max() < 0.03, (est, truth)
    assert est.mean() <= truth.mean() + 0.01
    # log_prob is the IWAE estimate; with a mask it estimates log p(x_obs)
    mask = pp.bottom_half.mask(tiny.shape)
    assert (tiny.log_prob(x, k=20000, mask=mask) - log_px(tiny, x, mask)).abs().max() < 0.03


def test_masked_pyro_likelihood_scores_observed_pixels_only(tiny):
    torch.manual_seed(2)
    x = tiny.sample(3)
    z = torch.randn(3, 1)
    mask = pp.bottom_half.mask(tiny.shape)
    tr = poutine.trace(poutine.condition(tiny.model, {"z": z})).get_trace(x, mask)
    tr.compute_log_prob()
    lp = tr.nodes["pixels"]["log_prob"]
    logp = torch.log_softmax(tiny.decode(z), 1).gather(1, x.unsqueeze(1)).squeeze(1)
    assert torch.allclose(lp, (logp * mask).flatten(1).sum(1), atol=1e-5)
    # the hidden pixels' values are never read
    x2 = torch.where(mask, x, (x + 1) % tiny.levels)
    tr2 = poutine.trace(poutine.condition(tiny.model, {"z": z})).get_trace(x2, mask)
    tr2.compute_log_prob()
    assert torch.allclose(tr2.nodes["pixels"]["log_prob"], lp)
    # and without a mask every pixel counts
    tr3 = poutine.trace(poutine.condition(tiny.model, {"z": z})).get_trace(x)
    tr3.compute_log_prob()
    assert torch.allclose(tr3.nodes["pixels"]["log_prob"], logp.flatten(1).sum(1), atol=1e-5)


def test_native_and_pyro_elbo_agree(tiny):
    torch.manual_seed(3)
    x = tiny.sample(4)
    pyro.clear_param_store()
    try:
        pyro.set_rng_seed(0)
        with torch.no_grad():
            pyro_loss = Trace_ELBO(num_particles=4000, vectorize_particles=True).loss(tiny.model, tiny.guide, x)
    finally:
        pyro.clear_param_store()
    with torch.no_grad():
        native = tiny.elbo(x.repeat(2000, 1, 1, 1)).view(2000, -1).sum(1)
    se = native.std() / math.sqrt(len(native))
    # Pyro's estimate has its own error, of the same order (sampled KL instead of closed form)
    assert abs(-pyro_loss - native.mean().item()) < 5 * se.item() + 0.02, (pyro_loss, native.mean(), se)


def test_pyro_model_samples_images(tiny):
    pyro.set_rng_seed(0)
    x = tiny.model(batch_size=5)
    assert x.shape == (5, 1, 3, 3) and int(x.min()) >= 0 and int(x.max()) < 4


def test_training_lowers_the_loss(tmp_path, data_root):
    from pixelprob.data import load_mnist
    from pixelprob.train import evaluate_bpd, train
    tr = load_mnist("train", data_root, levels=4)[:256]
    va = load_mnist("val", data_root, levels=4)[:64]
    torch.manual_seed(0)
    m = VAE(levels=4, latent_dim=4, hidden=4)
    torch.manual_seed(0)
    before = evaluate_bpd(m, va)
    out = train(m, tr, va, tmp_path, epochs=5, batch_size=32, lr=5e-3, max_steps=30, tensorboard=False,
                progress=False)
    assert out["stopped"] == "max_steps"
    torch.manual_seed(0)
    after = evaluate_bpd(m, va)
    assert after < before - 0.1, (before, after)


def test_checkpoint_round_trip(tmp_path, tiny):
    path = tmp_path / "tiny.pt"
    pp.save(tiny, path, meta={"note": "test"})
    ck = torch.load(path, weights_only=True)
    assert ck["kind"] == "vae"
    m2 = pp.load(path, device="cpu")
    assert m2.kind == "vae" and m2.config == tiny.config and m2.meta == {"note": "test"}
    z = torch.randn(7, 1)
    x = tiny.sample(7)
    assert torch.equal(tiny.decode(z), m2.decode(z))
    assert all(torch.equal(a, b) for a, b in zip(tiny.encode(x), m2.encode(x)))
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    assert torch.equal(tiny.sample(5, generator=g1), m2.sample(5, generator=g2))


def test_shipped_vae_loads(data_root):
    if "vae-mnist" not in pp.shipped():
        pytest.fail("pixelprob/weights/vae-mnist.pt is missing")
    m = pp.load("vae-mnist", device="cpu")
    assert m.kind == "vae" and m.shape == (1, 28, 28) and m.levels == 256 and not m.training
    from pixelprob.data import load_mnist
    torch.manual_seed(0)
    bpd = float(m.calc_likelihood(load_mnist("test", data_root)[:200]))
    # the model card's full-test-set ELBO, measured on a 200-digit slice
    assert abs(bpd - m.meta["test_bpd_elbo"]) < 0.1, (bpd, m.meta["test_bpd_elbo"])
    x = m.sample(2)
    assert x.shape == (2, 1, 28, 28)
    assert m.decode(torch.zeros(1, m.latent_dim)).shape == (1, 256, 1, 28, 28)


@pytest.mark.parametrize("shape,latent", [((1, 3, 3), 2), ((3, 15, 13), 3), ((1, 28, 28), 2), ((2, 8, 9), 1)])
def test_any_image_size(shape, latent):
    m = VAE(levels=4, shape=shape, latent_dim=latent, hidden=4)
    x = m.sample(3)
    assert x.shape == (3,) + shape
    assert m.decode(torch.zeros(2, latent)).shape == (2, 4) + shape
    assert m.elbo(x).shape == (3,)
    assert torch.isfinite(m.calc_likelihood(x))


def test_bernoulli_likelihood():
    m = VAE(levels=2, shape=(1, 4, 4), latent_dim=2, hidden=8, likelihood="bernoulli")
    logits = m.decode(torch.randn(3, 2))
    assert logits.shape == (3, 2, 1, 4, 4) and torch.all(logits[:, 0] == 0)
    x = m.sample(4)
    assert int(x.max()) <= 1 and torch.isfinite(m.elbo(x)).all()


def test_clear_errors(tiny):
    x = tiny.sample(2)
    with pytest.raises(TypeError, match="integer levels"):
        tiny.elbo(x.float())
    with pytest.raises(ValueError, match=r"shape \(batch, 1, 3, 3\)"):
        tiny.elbo(x[:, :, :2])
    with pytest.raises(ValueError, match="levels 0..3"):
        tiny.elbo(x + 4)
    with pytest.raises(ValueError, match="z must have shape"):
        tiny.decode(torch.zeros(2, 5))
    with pytest.raises(ValueError, match="k must be a positive integer"):
        tiny.iwae_bound(x, 0)
    with pytest.raises(ValueError, match="mask must have shape"):
        tiny.encode(x, torch.ones(4, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="bernoulli.*levels=2"):
        VAEConfig(levels=4, likelihood="bernoulli")
    with pytest.raises(ValueError, match="likelihood must be one of"):
        VAEConfig(likelihood="gaussian")
    with pytest.raises(ValueError, match="latent_dim must be a positive integer"):
        VAEConfig(latent_dim=0)
    with pytest.raises(ValueError, match="levels must be an integer in 2..256"):
        VAEConfig(levels=300)
    with pytest.raises(TypeError, match="either a VAEConfig or keyword"):
        VAE(VAEConfig(), levels=4)
