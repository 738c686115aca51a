import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from smallmines.bands import BAND_NAMES, GROUPS, INDICES, band_index, compute_channels, parse_bands, required_bands
from smallmines.errors import BandError, SmallminesError

ALL_NAMES = sorted({*BAND_NAMES, *GROUPS, *INDICES, "B2", "B8A", "b11", "VV", "elevation"})


def test_band_order_is_the_published_one():
    assert BAND_NAMES[:3] == ("blue", "green", "red")
    assert BAND_NAMES[10:] == ("vv", "vh", "dem")
    assert len(BAND_NAMES) == 13
    assert GROUPS["official6"] == ("blue", "green", "red", "rededge4", "swir1", "swir2")


@pytest.mark.parametrize(
    ("selection", "expected"),
    [
        ("s1,ndvi,B2", ("vv", "vh", "ndvi", "blue")),
        ("B8A, b11 ,VV", ("rededge4", "swir1", "vv")),
        (["dem", "rgb"], ("dem", "red", "green", "blue")),
        ("red,rgb,red", ("red", "green", "blue")),
        ("all", BAND_NAMES),
        ("s2,,", BAND_NAMES[:10]),
    ],
)
def test_parse_bands_expands_in_order_without_duplicates(selection, expected):
    assert parse_bands(selection) == expected


@pytest.mark.parametrize("selection", ["", " , ", []])
def test_parse_bands_rejects_empty(selection):
    with pytest.raises(BandError, match="empty"):
        parse_bands(selection)


def test_parse_bands_unknown_name_lists_the_choices():
    with pytest.raises(BandError) as info:
        parse_bands("s2,B13")
    message = str(info.value)
    assert "'B13'" in message
    for name in ("swir2", "B8A", "official6", "ndvi"):
        assert name in message
    assert isinstance(info.value, SmallminesError) and isinstance(info.value, ValueError)


@given(st.lists(st.sampled_from(ALL_NAMES), min_size=1, max_size=8))
def test_parse_bands_is_unique_and_idempotent(names):
    channels = parse_bands(names)
    assert len(set(channels)) == len(channels)
    assert parse_bands(channels) == channels
    assert set(required_bands(channels)) <= set(BAND_NAMES)


def test_band_index_and_required_bands():
    assert band_index("B8A") == 7
    assert band_index("dem") == 12
    with pytest.raises(BandError):
        band_index("ndvi")
    assert required_bands(("ndvi", "vv")) == ("red", "nir", "vv")


def _image(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(100, 5000, (13, 4, 4)).astype(np.float32)


def test_compute_channels_index_values_and_nan():
    image = _image(np.random.default_rng(0))
    image[:, 0, 0] = np.nan
    nir, red = image[BAND_NAMES.index("nir")], image[BAND_NAMES.index("red")]
    out = compute_channels(image, ("ndvi", "red", "vvvh"))
    assert out.shape == (3, 4, 4) and out.dtype == np.float32
    np.testing.assert_allclose(out[0, 1:], ((nir - red) / (nir + red))[1:], rtol=1e-6)
    np.testing.assert_array_equal(out[1], red)
    np.testing.assert_allclose(out[2], image[10] - image[11], rtol=1e-6)
    assert np.isnan(out[:, 0, 0]).all()


def test_compute_channels_zero_denominator_is_finite():
    image = np.zeros((13, 2, 2), np.float32)
    assert np.isfinite(compute_channels(image, ("ndvi", "bsi"))).all()


def test_compute_channels_torch_batch_matches_numpy():
    image = _image(np.random.default_rng(1))
    batch = torch.from_numpy(np.stack([image, image * 2]))
    out = compute_channels(batch, ("ndwi", "dem"))
    assert isinstance(out, torch.Tensor) and out.shape == (2, 2, 4, 4)
    np.testing.assert_allclose(out[0].numpy(), compute_channels(image, ("ndwi", "dem")), rtol=1e-6)


def test_compute_channels_from_a_subset_of_bands():
    image = _image(np.random.default_rng(2))
    subset = image[[BAND_NAMES.index("red"), BAND_NAMES.index("nir")]]
    np.testing.assert_allclose(compute_channels(subset, ("ndvi",), ("red", "nir")),
                               compute_channels(image, ("ndvi",)), rtol=1e-6)
    with pytest.raises(BandError, match="needs band .green., which the input lacks"):
        compute_channels(subset, ("mndwi",), ("red", "nir"))
