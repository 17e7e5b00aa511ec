"""A tiny VAE with a 1-D latent (3x3 images, 4 levels) and its truth by quadrature.

With one latent dimension every quantity is a 1-D integral over ``z``; on a
fine grid (trapezoid rule on [-10, 10]) they are exact to far below any Monte
Carlo tolerance:

    p(x_o)          = int p(z) prod_{i in o} p(x_i | z) dz
    p(x_t | x_o)    = int p(x_t | z) p(z) p(x_o | z) dz / p(x_o)
"""
import math

import torch

from pixelprob.models.vae import VAE, random_masks

GRID = torch.linspace(-10.0, 10.0, 8001)


def make_tiny_vae(seed=0, latent_dim=1, sharpen=3.0, encoder_steps=150):
    """Random decoder (sharpened so that answers depend strongly on z), encoder fitted to it.

    The encoder is trained, decoder frozen, on images sampled from the model
    with random masks (the bound on ``log p(x_obs)``), so that it is a
    sensible proposal for partly observed images. Takes about a second.
    """
    torch.manual_seed(seed)
    m = VAE(levels=4, shape=(1, 3, 3), latent_dim=latent_dim, hidden=16)
    with torch.no_grad():
        m.decoder.mlp[-1].weight.mul_(sharpen)
    opt = torch.optim.Adam(m.encoder.parameters(), lr=2e-2)
    data = m.sample(4096)
    for i in range(encoder_steps):
        x = data[(i * 128) % 4096:][:128]
        mask = random_masks(128, m.shape)
        loss = -(m.elbo(x, mask).mean() + m.elbo(x).mean())
        opt.zero_grad()
        loss.backward()
        opt.step()
    m.zero_grad(set_to_none=True)
    return m.eval()


@torch.no_grad()
def grid_logp(model):
    """``G x levels x C x H x W`` log p(x_i = v | z) on the grid, and log-weights of the grid points."""
    logp = torch.log_softmax(model.decode(GRID.view(-1, 1)).double(), 1)
    dz = float(GRID[1] - GRID[0])
    logw = -0.5 * GRID.double() ** 2 - 0.5 * math.log(2 * math.pi) + math.log(dz)
    logw[0] -= math.log(2)  # trapezoid end points
    logw[-1] -= math.log(2)
    return logp, logw


def log_px(model, x, mask=None):
    """Exact log p(x) (or log p(x_obs)) for each image of ``x`` (``B x C x H x W``)."""
    logp, logw = grid_logp(model)
    out = []
    for img in x:
        ll = logp.gather(1, img.long().view(1, 1, *model.shape).expand(len(GRID), 1, *model.shape)).squeeze(1)
        if mask is not None:
            ll = ll * mask
        out.append(torch.logsumexp(logw + ll.flatten(1).sum(1), 0))
    return torch.stack(out)


def marginals(model, image, observed, target):
    """Exact ``T x levels`` marginals of the target pixels given the observed pixels of ``image``."""
    logp, logw = grid_logp(model)
    ll = logp.gather(1, image.long().view(1, 1, *model.shape).expand(len(GRID), 1, *model.shape)).squeeze(1)
    post = torch.softmax(logw + (ll * observed).flatten(1).sum(1), 0)  # G
    pt = logp.exp().permute(0, 2, 3, 4, 1)[:, target]  # G x T x L
    return (post.view(-1, 1, 1) * pt).sum(0)


def one_thread():
    """Run a module's tests on one thread: these models are tiny, and a second thread only adds
    synchronisation (tens of times slower on a loaded machine). Restores the setting afterwards."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
