"""Data loading, the trainer, checkpoints and resume."""
import os

import pytest
import torch

import pixelprob as pp
from pixelprob.data import load_mnist, requantize
from pixelprob.models import PixelCNN
from pixelprob.train import evaluate_bpd, train


def test_mnist_splits(data_root):
    tr = load_mnist("train", data_root)
    va, yv = load_mnist("val", data_root, with_labels=True)
    te = load_mnist("test", data_root)
    assert tr.shape == (50000, 1, 28, 28) and va.shape == (10000, 1, 28, 28) and te.shape == (10000, 1, 28, 28)
    assert tr.dtype == torch.uint8 and int(tr.max()) == 255 and len(yv) == 10000
    # the split is fixed: same seed, same images, and train and val are disjoint draws of the 60k
    assert torch.equal(load_mnist("val", data_root)[:5], va[:5])
    assert not torch.equal(tr[:100], va[:100])


def test_requantize(data_root):
    x = load_mnist("test", data_root)[:100]
    b = requantize(x, 2)
    assert set(b.unique().tolist()) <= {0, 1}
    assert torch.equal(b, (x >= 128).to(torch.uint8))
    assert int(requantize(x, 16).max()) <= 15
    with pytest.raises(ValueError, match="2..256"):
        requantize(x, 300)


def test_env_var_and_missing_root(data_root, monkeypatch, tmp_path):
    monkeypatch.setenv("PIXELPROB_DATA", data_root)
    assert load_mnist("test").shape[0] == 10000
    with pytest.raises(FileNotFoundError, match=r"MNIST not found under .*empty.*PIXELPROB_DATA"):
        load_mnist("test", root=tmp_path / "empty")
    with pytest.raises(ValueError, match="split must be one of"):
        load_mnist("training", data_root)


def _tiny(seed=0):
    torch.manual_seed(seed)
    return PixelCNN(levels=2, shape=(1, 28, 28), channels=8, layers=2)


def test_loss_falls_on_mnist_subset(data_root, tmp_path):
    x = requantize(load_mnist("train", data_root)[:512], 2)
    v = requantize(load_mnist("val", data_root)[:256], 2)
    m = _tiny()
    before = evaluate_bpd(m, v)
    res = train(m, x, v, tmp_path, epochs=2, batch_size=32, lr=3e-3, progress=False, tensorboard=False)
    assert res["best_val"] < before - 0.1, (before, res["history"])
    ck = torch.load(res["best"], weights_only=True)
    assert ck["kind"] == "pixelcnn" and "state_dict" in ck


def test_checkpoint_round_trip_and_resume(data_root, tmp_path):
    x = requantize(load_mnist("train", data_root)[:256], 2)
    v = requantize(load_mnist("val", data_root)[:64], 2)
    # straight run
    a = _tiny()
    train(a, x, v, tmp_path / "a", epochs=2, batch_size=32, progress=False, tensorboard=True, sample_grid=4)
    # killed after 5 steps of the first epoch, then resumed from last.pt
    b = _tiny()
    r = train(b, x, v, tmp_path / "b", epochs=2, batch_size=32, progress=False, tensorboard=False, max_steps=5)
    assert r["stopped"] == "max_steps"
    b2 = _tiny(seed=123)  # a fresh process: different init, the checkpoint must restore everything
    train(b2, x, v, tmp_path / "b", epochs=2, batch_size=32, progress=False, tensorboard=False, sample_grid=4)
    for (k, p), q in zip(a.state_dict().items(), b2.state_dict().values()):
        assert torch.allclose(p, q, atol=1e-6), k
    # TensorBoard got scalars and images
    assert any(f.name.startswith("events") for f in (tmp_path / "a" / "tb").iterdir())
    # pixelprob.load gives identical outputs
    loaded = pp.load(tmp_path / "a" / "last.pt", device="cpu")
    a.eval()
    assert torch.equal(loaded(x[:4]), a(x[:4]))


def test_load_errors():
    with pytest.raises(FileNotFoundError, match="shipped models"):
        pp.load("no-such-model")
