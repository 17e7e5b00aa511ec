"""The shipped default weights load and answer on real digits."""
import pytest
import torch

import pixelprob as pp
from pixelprob.data import load_mnist


def test_shipped_pixelcnn_loads_and_is_causal():
    assert "pixelcnn-mnist" in pp.shipped()
    m = pp.load("pixelcnn-mnist", device="cpu")
    assert m.shape == (1, 28, 28) and m.levels == 256 and not m.training
    assert "test_bpd" in m.meta
    from pixelprob.models import check_autoregressive
    small = pp.checkpoint.build_model("pixelcnn", dict(m.config.to_dict(), shape=[1, 8, 8]))
    small.load_state_dict(m.state_dict())
    assert check_autoregressive(small) == []


def test_shipped_pixelcnn_bpd_on_test_digits(data_root):
    m = pp.load("pixelcnn-mnist", device="cpu")
    x = load_mnist("test", data_root)[:200]
    bpd = float(m.calc_likelihood(x))
    # the model card's full-test-set figure, measured on a 200-digit slice
    assert abs(bpd - m.meta["test_bpd"]) < 0.1, (bpd, m.meta["test_bpd"])
