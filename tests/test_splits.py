from collections import defaultdict
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smallmines.data.layout import PatchKey, discover
from smallmines.data.splits import (
    SPLIT_METHODS,
    block_id,
    carve_validation,
    official_split,
    parse_patch_name,
    random_split,
    read_split_csv,
    share_bin,
    spatial_split,
    summarize,
    write_split_csv,
    year_split,
)
from smallmines.errors import ConfigError, SplitError


def make_keys(tiles: int, years=(2016, 2022), country="GH") -> dict[str, PatchKey]:
    keys = [PatchKey(f"{t:04d}", y, country) for t in range(1, tiles + 1) for y in years]
    return {k.id: k for k in keys}


def make_shares(keys, seed=0) -> dict[str, float]:
    import numpy as np

    rng = np.random.default_rng(seed)
    return {pid: float(rng.choice([0.0, 0.5, 3.0, 20.0, 70.0])) for pid in keys}


def sites_of(split, keys) -> dict[str, set[str]]:
    out = defaultdict(set)
    for pid, name in split.items():
        out[keys[pid].site].add(name)
    return out


@pytest.mark.parametrize(("share", "expected"), [(0, 0), (0.001, 1), (1.0, 1), (1.01, 2), (5, 2), (25, 4),
                                                  (50, 5), (50.5, 6), (100, 6)])
def test_share_bin(share, expected):
    assert share_bin(share) == expected


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("IMG_GH_0001_2016.tif", PatchKey("0001", 2016, "GH")),
        ("MASK_GH_0001_2016.tif", PatchKey("0001", 2016, "GH")),
        ("IMG_0001_2016", PatchKey("0001", 2016, "")),
        ("GH_0001_2016", PatchKey("0001", 2016, "GH")),
        ("0001_2016", PatchKey("0001", 2016, "")),
        (" SmallMinesDS/2016/IMAGE/IMG_GH_0001_2016.tif ", PatchKey("0001", 2016, "GH")),
    ],
)
def test_parse_patch_name_variants(name, key):
    assert parse_patch_name(name) == key


def test_parse_patch_name_rejects():
    assert parse_patch_name("preview.png") is None
    assert parse_patch_name("GH_0001") is None


@pytest.mark.parametrize(
    "names",
    [
        ["IMG_GH_0001_2016.tif", "IMG_GH_0002_2016.tif"],
        ["IMG_0001_2016.tif", "MASK_0002_2016"],
        ["GH_0001_2016", "0002_2016"],
        ["MASK_GH_1_2016.tif", "IMG_GH_2_2016.tiff"],
    ],
)
def test_read_split_csv_matches_any_naming(names):
    keys = make_keys(3, years=(2016,))
    text = "patch_name,class_percentage,bin,split\n" + "".join(
        f"{n},0.0,0,{s}\n" for n, s in zip(names, ["train", "Test"], strict=True))
    split, unmatched = read_split_csv(text, "x.csv", keys)
    assert split == {"GH_0001_2016": "train", "GH_0002_2016": "test"}
    assert unmatched == []


def test_read_split_csv_reports_unmatched_and_rejects_bad_files():
    keys = make_keys(2, years=(2016,))
    split, unmatched = read_split_csv("patch_name,split\nIMG_GH_0009_2016.tif,train\nCI_0001_2016,test\n"
                                      "junk,train\nGH_0001_2016,validation\n", "s.csv", keys)
    assert split == {"GH_0001_2016": "val"}
    assert unmatched == ["IMG_GH_0009_2016.tif", "CI_0001_2016", "junk"]
    with pytest.raises(SplitError, match=r"s.csv: columns \['name', 'split'\]"):
        read_split_csv("name,split\nGH_0001_2016,train\n", "s.csv", keys)
    with pytest.raises(SplitError, match="s.csv, line 3: split 'holdout'"):
        read_split_csv("patch_name,split\nGH_0001_2016,train\nGH_0002_2016,holdout\n", "s.csv", keys)
    with pytest.raises(SplitError, match="line 3: GH_0001_2016 is in 'test' here and in 'train'"):
        read_split_csv("patch_name,split\nGH_0001_2016,train\nGH_0001_2016,test\n", "s.csv", keys)


def test_official_split_of_the_synthetic_dataset(synth_root, tmp_path):
    layout = discover(synth_root)
    split, unmatched = official_split(layout)
    assert set(split) == {p.id for p in layout.patches}
    assert set(split.values()) == {"train", "test"} and unmatched == []
    # a missing year file is an error that says where it looked and what to do
    alone = discover(Path(synth_root) / "SmallMinesDS" / "2016")
    with pytest.raises(SplitError, match="no split file train_test_splits_2016.csv.*splits_dir"):
        official_split(alone)
    # an explicit splits_dir is searched
    assert official_split(alone, Path(synth_root) / "data_splits")[0].keys() == {
        p.id for p in alone.patches}


def test_random_split_reproducible_site_grouped_and_stratified():
    keys = make_keys(60)
    shares = make_shares(keys)
    a = random_split(keys, shares, seed=3)
    assert a == random_split(dict(reversed(list(keys.items()))), shares, seed=3)
    assert a != random_split(keys, shares, seed=4)
    assert set(a) == set(keys)
    assert all(len(names) == 1 for names in sites_of(a, keys).values())
    counts = summarize(a, keys)[2016]
    assert counts["test"] == pytest.approx(12, abs=3) and counts["val"] == pytest.approx(6, abs=3)
    # every mining bin with enough sites is represented in test
    test_bins = {share_bin(max(shares[f"GH_{k.tile}_2016"], shares[f"GH_{k.tile}_2022"]))
                 for pid, k in keys.items() if a[pid] == "test"}
    assert len(test_bins) >= 4


def test_year_split():
    keys = make_keys(30, years=(2016, 2019, 2022))
    shares = make_shares(keys)
    split = year_split(keys, shares, seed=0, train_years=[2016], test_years=[2022], val_fraction=0.2)
    assert {keys[p].year for p, s in split.items() if s == "test"} == {2022}
    assert {keys[p].year for p, s in split.items() if s in ("train", "val")} == {2016}
    assert not any(keys[p].year == 2019 for p in split)
    assert 3 <= sum(s == "val" for s in split.values()) <= 9
    assert split == year_split(keys, shares, seed=0, train_years=[2016], test_years=[2022], val_fraction=0.2)
    with pytest.raises(SplitError, match="both train and test"):
        year_split(keys, shares, train_years=[2016], test_years=[2016, 2022])
    with pytest.raises(SplitError, match="no patch of years"):
        year_split(keys, shares, train_years=[2000], test_years=[2001])


def test_year_split_validation_takes_whole_sites():
    keys = make_keys(40, years=(2016, 2019, 2022))
    split = year_split(keys, make_shares(keys), seed=1, train_years=[2016, 2019], test_years=[2022])
    train_sites = sites_of({p: s for p, s in split.items() if keys[p].year != 2022}, keys)
    assert all(len(names) == 1 for names in train_sites.values())
    assert any(names == {"val"} for names in train_sites.values())


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.tuples(st.floats(-50_000, 50_000), st.floats(-50_000, 50_000)), min_size=4, max_size=40),
    st.floats(500, 20_000),
    st.integers(0, 10_000),
)
def test_spatial_split_never_splits_a_block_or_a_site(points, block_size, seed):
    keys = make_keys(len(points))
    centers = {}
    for pid, key in keys.items():
        x, y = points[int(key.tile) - 1]
        jitter = 0.4 if key.year == 2022 else 0.0  # the same tile, slightly different footprint
        centers[pid] = (x + jitter, y - jitter)
    shares = make_shares(keys, seed)
    split = spatial_split(keys, shares, centers, seed=seed, block_size=block_size)
    assert set(split) == set(keys)
    assert all(len(names) == 1 for names in sites_of(split, keys).values())
    by_block = defaultdict(set)
    for site, pids in sites_of({p: p for p in keys}, keys).items():
        mean_x = sum(centers[p][0] for p in pids) / len(pids)
        mean_y = sum(centers[p][1] for p in pids) / len(pids)
        by_block[block_id(mean_x, mean_y, block_size)] |= {split[p] for p in keys if keys[p].site == site}
    assert all(len(names) == 1 for names in by_block.values())
    assert split == spatial_split(keys, shares, centers, seed=seed, block_size=block_size)


def test_spatial_split_errors():
    keys = make_keys(3)
    with pytest.raises(SplitError, match="no footprint"):
        spatial_split(keys, {}, {}, block_size=1000)
    with pytest.raises(ConfigError, match="block size"):
        spatial_split(keys, {}, dict.fromkeys(keys, (0.0, 0.0)), block_size=0)


def test_block_id_floors_negative_coordinates():
    assert block_id(-1.0, 1.0, 1000) == "-1_0"
    assert block_id(999.9, -0.1, 1000) == "0_-1"


@pytest.mark.parametrize(("test", "val"), [(1.0, 0.0), (0.5, 0.5), (-0.1, 0.1), (0.2, 1.2)])
def test_fractions_are_checked(test, val):
    keys = make_keys(5)
    with pytest.raises(ConfigError, match="fraction"):
        random_split(keys, {}, test_fraction=test, val_fraction=val)


def test_carve_validation_moves_only_train_and_groups_sites():
    keys = make_keys(50)
    shares = make_shares(keys)
    official = {p: ("test" if int(k.tile) % 5 == 0 else "train") for p, k in keys.items()}
    carved = carve_validation(official, shares, 0.2, seed=0, keys=keys)
    assert {p for p, s in carved.items() if s == "test"} == {p for p, s in official.items() if s == "test"}
    assert 14 <= sum(s == "val" for s in carved.values()) <= 26
    assert all(len(names) == 1 for names in sites_of(carved, keys).values())
    assert carve_validation(official, shares, 0.0) == official
    ungrouped = carve_validation(official, shares, 0.2, seed=0)
    assert sum(s == "val" for s in ungrouped.values()) == pytest.approx(16, abs=3)


@pytest.mark.parametrize("method", sorted(set(SPLIT_METHODS) - {"country"}))  # country: tests/test_build.py
def test_csv_round_trip(method, tmp_path):
    keys = make_keys(20, country="")
    shares = make_shares(keys)
    kwargs = {"centers": {p: (int(k.tile) * 900.0, 0.0) for p, k in keys.items()}} if method == "spatial" else {}
    split = SPLIT_METHODS[method](keys, shares, seed=5, **kwargs)
    path = write_split_csv(tmp_path / "s.csv", split, shares)
    text = path.read_text()
    assert text.splitlines()[0] == "patch_name,class_percentage,bin,split"
    back, unmatched = read_split_csv(text, str(path), keys)
    assert back == split and unmatched == []
    # written sorted, so the same split always gives the same bytes
    assert write_split_csv(tmp_path / "t.csv", dict(reversed(list(split.items()))), shares).read_text() == text


def test_summarize():
    keys = make_keys(2)
    split = {"GH_0001_2016": "train", "GH_0002_2016": "test", "GH_0001_2022": "val"}
    assert summarize(split, keys) == {2016: {"train": 1, "val": 0, "test": 1}, 2022: {"train": 0, "val": 1, "test": 0}}
