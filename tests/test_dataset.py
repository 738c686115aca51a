import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from smallmines.bands import BAND_NAMES, compute_channels
from smallmines.data.dataset import PatchSource, SmallMinesDS, export_split, resolve_split
from smallmines.data.io import read_patch
from smallmines.data.layout import discover
from smallmines.data.splits import SPLIT_NAMES
from smallmines.data.stats import BandStats
from smallmines.errors import BandError, ConfigError, SplitError


@pytest.fixture(scope="module")
def source(synth_root):
    return PatchSource(synth_root)


def dihedral(array: np.ndarray) -> list[np.ndarray]:
    """The 8 flips/rotations of the last two axes."""
    out = []
    for k in range(4):
        rotated = np.rot90(array, k, axes=(-2, -1))
        out += [rotated, rotated[..., ::-1]]
    return out


def assert_same_samples(a: SmallMinesDS, b: SmallMinesDS) -> None:
    assert a.ids == b.ids and len(a) > 0
    for i in range(len(a)):
        x, y = a[i], b[i]
        assert (x["id"], x["year"]) == (y["id"], y["year"])
        torch.testing.assert_close(x["image"], y["image"], rtol=0, atol=0)
        assert torch.equal(x["mask"], y["mask"])


def test_sample_format(synth_root):
    ds = SmallMinesDS(synth_root, split="train", bands="official6,ndvi")
    sample = ds[0]
    assert sample["image"].shape == (7, 128, 128) and sample["image"].dtype == torch.float32
    assert sample["mask"].shape == (128, 128) and sample["mask"].dtype == torch.int64
    assert sample["id"] == ds.ids[0] and sample["year"] in (2016, 2022)
    assert set(torch.unique(sample["mask"]).tolist()) <= {0, 1, 255}


def test_zip_and_folder_give_identical_samples(synth_root, synth_zip):
    stats = BandStats(BAND_NAMES, tuple(range(13)), tuple(range(1, 14)))
    for split in (None, "test"):
        assert_same_samples(SmallMinesDS(synth_root, split=split, stats=stats),
                            SmallMinesDS(synth_zip, split=split, stats=stats))


def test_splits_partition_the_dataset(source):
    ids = {name: set(SmallMinesDS(source, split=name).ids) for name in SPLIT_NAMES}
    assert all(ids.values())
    assert not (ids["train"] & ids["val"]) and not (ids["train"] & ids["test"]) and not (ids["val"] & ids["test"])
    assert set().union(*ids.values()) == set(source.ids)
    assert set(SmallMinesDS(source, split=None).ids) == set(source.ids)


def test_nodata_becomes_zero_and_ignore_index(synth_root, source):
    ref = next(r for r in discover(synth_root).patches if np.isnan(read_patch(r)[0]).any())
    raw, _ = read_patch(ref)
    stats = BandStats(BAND_NAMES + ("ndvi",), (500.0,) * 14, (100.0,) * 14)
    ds = SmallMinesDS(source, split=None, bands="all,ndvi", stats=stats)
    sample = ds[ds.ids.index(ref.id)]
    nodata = np.isnan(raw).any(axis=0)
    image, mask = sample["image"].numpy(), sample["mask"].numpy()
    assert (image[:, nodata] == 0).all() and (mask[nodata] == 255).all()
    np.testing.assert_allclose(image[:, ~nodata], ((compute_channels(raw, ds.channels) - 500) / 100)[:, ~nodata],
                               rtol=1e-5, atol=1e-5)
    assert np.isfinite(image).all()


def test_raw_values_without_stats(source):
    ds = SmallMinesDS(source, split=None, bands="dem,red")
    image, mask = read_patch(discover(source.path).patches[0])
    np.testing.assert_array_equal(ds[0]["image"].numpy(), np.nan_to_num(image[[12, 2]], nan=0.0))


def test_augmentation_is_joint_and_only_when_asked(source):
    plain = SmallMinesDS(source, split=None)
    assert torch.equal(plain[3]["image"], plain[3]["image"])
    augmented = SmallMinesDS(source, split=None, augment=True)
    base_image, base_mask = plain[3]["image"].numpy(), plain[3]["mask"].numpy()
    images, masks = dihedral(base_image), dihedral(base_mask)
    torch.manual_seed(0)
    seen = set()
    for _ in range(12):
        sample = augmented[3]
        matches = [k for k, img in enumerate(images) if np.array_equal(img, sample["image"].numpy())]
        assert matches, "an augmented image is a flip/rotation of the original"
        assert any(np.array_equal(masks[k], sample["mask"].numpy()) for k in matches), "mask moved with the image"
        seen.add(matches[0])
    assert len(seen) > 1


def test_stats_subset_and_order(source):
    full = SmallMinesDS(source, split="train", bands="red,ndvi,blue").compute_stats()
    ds = SmallMinesDS(source, split="train", bands="ndvi,red", stats=full)
    assert ds.stats.channels == ("ndvi", "red")
    assert ds.stats.mean == (full.mean[1], full.mean[0])
    raw, _ = ds.raw(0)
    expected = (raw - np.array(ds.stats.mean, np.float32)[:, None, None]) / np.array(ds.stats.std)[:, None, None]
    np.testing.assert_allclose(ds[0]["image"].numpy(), np.nan_to_num(expected), rtol=1e-5, atol=1e-5)
    with pytest.raises(ConfigError, match="lack channels.*swir1"):
        SmallMinesDS(source, split="train", bands="swir1", stats=full)


def test_compute_stats_uses_the_split_only(source):
    ds = SmallMinesDS(source, split="train", bands="red,vv")
    stats = ds.compute_stats()
    pixels = np.concatenate([ds.raw(i)[0].reshape(2, -1) for i in range(len(ds))], axis=1)
    np.testing.assert_allclose(stats.mean, np.nanmean(pixels, axis=1), rtol=1e-6)
    np.testing.assert_allclose(stats.std, np.nanstd(pixels, axis=1), rtol=1e-5)
    test = SmallMinesDS(source, split="test", bands="red,vv").compute_stats()
    assert test.mean != stats.mean


def test_stats_json_round_trip(source, tmp_path):
    stats = SmallMinesDS(source, split="train", bands="s1").compute_stats()
    path = stats.save(tmp_path / "stats.json")
    ds = SmallMinesDS(source, split="train", bands="s1", stats=path)
    assert ds.stats.mean == pytest.approx(stats.mean) and ds.stats.channels == ("vv", "vh")


def test_bad_arguments(source):
    with pytest.raises(ConfigError, match=r"'training' is not one of \('train', 'val', 'test'\)") as info:
        SmallMinesDS(source, split="training")
    assert isinstance(info.value, ValueError)
    with pytest.raises(SplitError, match="neither a method"):
        SmallMinesDS(source, splits="by-magic")
    with pytest.raises(BandError):
        SmallMinesDS(source, bands="B13")
    with pytest.raises(ConfigError, match="takes no option block_size"):
        resolve_split(source, "random", block_size=1000)
    with pytest.raises(ConfigError, match="takes no option"):
        resolve_split(source, "official", test_fraction=0.3)
    with pytest.raises(SplitError, match="not usable patches"):
        resolve_split(source, {"GH_9999_2016": "train"})


@pytest.mark.parametrize("method", ["random", "year", "spatial"])
def test_generated_methods_are_reproducible(source, method):
    a = resolve_split(source, method, seed=1)
    assert a == resolve_split(source, method, seed=1)
    assert set(a.values()) <= set(SPLIT_NAMES)


def test_year_filter_and_years_method(source):
    ds = SmallMinesDS(source, split="test", splits="year", years=[2022])
    assert len(ds) == 16 and all(pid.endswith("_2022") for pid in ds.ids)
    assert len(SmallMinesDS(source, split="test", splits="year", years=[2016])) == 0


def test_exported_csv_reproduces_the_split(source, tmp_path):
    split, summary = export_split(source, tmp_path / "split.csv", "spatial", seed=2, block_size=2000.0)
    assert sum(sum(row.values()) for row in summary.values()) == len(split)
    assert resolve_split(source, tmp_path / "split.csv") == split
    assert SmallMinesDS(source, split="val", splits=tmp_path / "split.csv").ids == [
        pid for pid in source.ids if split.get(pid) == "val"]


def test_dataset_without_country_codes(synth_nocountry):
    ds = SmallMinesDS(synth_nocountry, split="train")
    assert len(ds) > 0 and all(not pid.startswith("GH") for pid in ds.ids)


def test_split_files_beside_the_folder_or_in_splits_dir(synth_root):
    full_test = SmallMinesDS(synth_root, split="test").ids
    assert SmallMinesDS(synth_root / "SmallMinesDS", split="test").ids == full_test
    year_folder = synth_root / "SmallMinesDS" / "2016"
    with pytest.raises(SplitError, match="no split file train_test_splits_2016.csv"):
        SmallMinesDS(year_folder, split="test")
    ds = SmallMinesDS(year_folder, split="test", splits_dir=synth_root / "data_splits")
    assert ds.ids == [pid for pid in full_test if pid.endswith("_2016")]


def test_unusable_patches_are_left_out(broken, caplog):
    bad_bands = broken.bad_band_count(0)
    broken.all_nodata(1)
    source = PatchSource(broken.root)
    ds = SmallMinesDS(source, split=None)
    bad_ids = {broken.ref(0).id, broken.ref(1).id}
    assert set(source.bad) == bad_ids
    assert bad_bands in source.bad[broken.ref(0).id]
    assert set(ds.ids) == set(source.ids) - bad_ids
    assert "leaving out patch" in caplog.text
    for name in SPLIT_NAMES:  # no split names a bad patch
        assert not set(SmallMinesDS(source, split=name).ids) & bad_ids
    for i in range(len(ds)):
        ds[i]


def test_dataloader_batches(source):
    loader = DataLoader(SmallMinesDS(source, split="train", bands="rgb"), batch_size=4)
    batch = next(iter(loader))
    assert batch["image"].shape == (4, 3, 128, 128) and batch["mask"].shape == (4, 128, 128)
    assert len(batch["id"]) == 4


def test_plot_returns_a_figure(source):
    ds = SmallMinesDS(source, split="train", bands="rgb")
    sample = ds[0]
    sample["prediction"] = sample["mask"].clamp(max=1)
    fig = ds.plot(sample, suptitle="x")
    assert len(fig.axes) == 3
    with pytest.raises(BandError, match="plot needs"):
        SmallMinesDS(source, split="train", bands="s1").plot(sample)
