"""PixelCNNImage inside Pyro programs, and the partly observed query program."""
import pyro
import pyro.poutine as poutine
import torch

import pixelprob as pp
from pixelprob.distributions import PixelCNNImage, pixelcnn_query_program


def test_pixelcnn_image_in_a_pyro_program(tiny_pixelcnn, tiny_oracle):
    d = PixelCNNImage(tiny_pixelcnn)
    assert d.event_shape == (1, 3, 3) and d.batch_shape == ()
    x = tiny_oracle.sample(5)

    def program(obs=None):
        with pyro.plate("images", 5):
            return pyro.sample("x", PixelCNNImage(tiny_pixelcnn), obs=obs)

    tr = poutine.trace(program).get_trace(x)
    assert torch.allclose(tr.log_prob_sum(), tiny_oracle.lp[_index(x)].sum(), atol=1e-4)
    pyro.set_rng_seed(0)
    s = poutine.trace(program).get_trace().nodes["x"]["value"]
    assert s.shape == (5, 1, 3, 3) and int(s.max()) < 4
    assert bool(d.support.check(s).all())


def _index(x):
    # position of each image in the oracle's enumeration order (base-4 digits, raster order)
    digits = x.flatten(1)
    return (digits * (4 ** torch.arange(8, -1, -1))).sum(1)


def test_query_program_scores_the_full_joint(tiny_pixelcnn, tiny_oracle):
    x = tiny_oracle.sample(3)
    hidden = pp.top_half.mask(tiny_pixelcnn.shape) | pp.middle_pixel.mask(tiny_pixelcnn.shape)
    cond = poutine.condition(pixelcnn_query_program, data={"hidden": x[:, hidden]})
    tr = poutine.trace(cond).get_trace(tiny_pixelcnn, hidden, x)
    tr.compute_log_prob()
    total = sum(site["log_prob"] for site in tr.nodes.values() if site["type"] == "sample")
    # the site's density is the joint p(x): the posterior up to p(observed)
    assert torch.allclose(total, tiny_oracle.lp[_index(x)], atol=1e-4)
