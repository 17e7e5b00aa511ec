"""Bad input gets a clear error that names the problem and what is accepted."""
import pytest
import torch

import pixelprob as pp


@pytest.fixture
def img(tiny_oracle):
    return tiny_oracle.sample(1)[0]


def test_overlap(tiny_pixelcnn, img):
    with pytest.raises(ValueError, match="overlap"):
        pp.query(tiny_pixelcnn, observe=pp.top_half(img), target=pp.top_half | pp.middle_pixel)


def test_empty_target(tiny_pixelcnn, img):
    with pytest.raises(ValueError, match="empty"):
        pp.query(tiny_pixelcnn, observe=pp.top_half(img), target=pp.nothing)
    with pytest.raises(ValueError, match="target is required"):
        pp.query(tiny_pixelcnn, observe=pp.top_half(img))


def test_wrong_shape_and_dtype(tiny_pixelcnn, img):
    with pytest.raises(ValueError, match=r"shape \(1, 3, 3\)"):
        pp.query(tiny_pixelcnn, observe=pp.top_half(torch.zeros(1, 4, 4, dtype=torch.long)), target=pp.middle_pixel)
    with pytest.raises(TypeError, match="integer levels"):
        pp.query(tiny_pixelcnn, observe=pp.top_half(img.float()), target=pp.middle_pixel)
    with pytest.raises(TypeError, match="names pixels but not their values"):
        pp.query(tiny_pixelcnn, observe=pp.top_half, target=pp.middle_pixel)


def test_values_outside_levels(tiny_pixelcnn, img):
    bad = img.clone()
    bad[0, 0, 0] = 7
    with pytest.raises(ValueError, match=r"levels 0\.\.3"):
        pp.query(tiny_pixelcnn, observe=pp.top_half(bad), target=pp.middle_pixel)
    with pytest.raises(ValueError, match=r"levels 0\.\.3"):
        tiny_pixelcnn.log_prob(bad[None])


def test_unknown_method_lists_methods(tiny_pixelcnn, img):
    with pytest.raises(ValueError, match="unknown method 'magic'.*enumerate"):
        pp.query(tiny_pixelcnn, observe=pp.top_half(img), target=pp.middle_pixel, method="magic")


def test_method_that_does_not_apply_lists_alternatives(tiny_pixelcnn, img):
    with pytest.raises(ValueError, match="does not apply.*Methods that can answer this query: .*enumerate"):
        pp.query(tiny_pixelcnn, observe=pp.bottom_half(img), target=pp.middle_pixel, method="exact")
    with pytest.raises(ValueError, match="raster-order prefix"):
        pp.query(tiny_pixelcnn, observe=pp.bottom_half(img), target=pp.middle_pixel, method="ancestral")


def test_enumeration_too_large_says_how_large():
    from pixelprob.models import PixelCNN
    m = PixelCNN(levels=4, shape=(1, 5, 5), channels=4, layers=1).eval()
    x = torch.zeros(1, 5, 5, dtype=torch.long)
    with pytest.raises(ValueError, match=r"4\^13 = 6\.71e\+07 configurations"):
        pp.query(m, observe=pp.bottom_half(x), target=pp.middle_pixel, method="enumerate")


def test_region_errors():
    with pytest.raises(ValueError, match="unknown region name"):
        pp.regions.as_region("left_half")
    with pytest.raises(ValueError, match="outside a 3x3 image"):
        pp.pixel(5, 0).mask((1, 3, 3))
    with pytest.raises(TypeError, match="boolean"):
        pp.from_mask(torch.zeros(3, 3))


def test_region_algebra():
    S = (1, 5, 5)
    assert int(pp.top_half.mask(S).sum()) == 12 and int(pp.bottom_half.mask(S).sum()) == 12
    assert torch.equal(pp.top_half.mask(S) | pp.middle_pixel.mask(S) | pp.bottom_half.mask(S), torch.ones(S, dtype=torch.bool))
    assert torch.equal((~pp.top_half & ~pp.bottom_half).mask(S), pp.middle_pixel.mask(S))
    assert pp.middle_pixel.mask((1, 28, 28))[0, 14, 14]
    assert int(pp.rows(1, 3).mask(S).sum()) == 10 and int(pp.rect(0, 2, 0, 2).mask(S).sum()) == 4
    ev = pp.bottom_half(torch.zeros(S, dtype=torch.long))
    assert isinstance(ev, pp.Evidence)


def test_bad_model_config():
    from pixelprob.models import PixelCNN
    with pytest.raises(ValueError, match="levels must be an integer in 2..256"):
        PixelCNN(levels=1)
    with pytest.raises(ValueError, match="kernel_size must be a positive odd"):
        PixelCNN(kernel_size=4)
    with pytest.raises(ValueError, match="dilations must list one"):
        PixelCNN(layers=2, dilations=[1])
    with pytest.raises(ValueError, match="shape must be"):
        PixelCNN(shape=(28, 28))
    with pytest.raises(ValueError, match="illegal must be None or one of"):
        PixelCNN(illegal="diagonal")


def test_not_a_model():
    with pytest.raises(TypeError, match="pixelprob model"):
        pp.query(torch.nn.Linear(2, 2), target=pp.middle_pixel)


def test_illegal_models_are_refused_by_query():
    from pixelprob.models import PixelCNN
    m = PixelCNN(levels=4, shape=(1, 3, 3), channels=4, layers=1, illegal="center")
    with pytest.raises(ValueError, match="illegal='center'.*not a chain-rule density"):
        pp.query(m, target=pp.first_pixel)
