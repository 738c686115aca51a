import json
import pickle
import shutil
import struct

import numpy as np
import pytest
import torch

from smallmines.data.dataset import PatchSource, SmallMinesDS, resolve_split
from smallmines.data.io import read_patch
from smallmines.data.layout import discover
from smallmines.data.pack import MAGIC_V1, PackedSource, is_pack, pack_dataset
from smallmines.data.splits import SPLIT_NAMES
from smallmines.errors import CorruptFileError, DataFormatError, SplitError


@pytest.fixture(scope="module")
def packed(synth_root, tmp_path_factory):
    return pack_dataset(synth_root, tmp_path_factory.mktemp("pack") / "ds.smpack")


def test_pack_reads_back_identical_samples(synth_root, packed):
    files, pack = PatchSource(synth_root), PatchSource(packed)
    assert pack.pack is not None and is_pack(packed) and not is_pack(synth_root)
    assert pack.ids == files.ids and len(pack) == 32
    assert pack.shares == pytest.approx(files.shares, abs=1e-9)
    assert pack.centers == files.centers
    assert pack.official() == files.official()
    for split in (None, *SPLIT_NAMES):
        a = SmallMinesDS(files, split=split, bands="all,ndvi")
        b = SmallMinesDS(pack, split=split, bands="all,ndvi")
        assert a.ids == b.ids
        for i in range(len(a)):
            x, y = a[i], b[i]
            assert x["id"] == y["id"] and x["year"] == y["year"]
            assert torch.equal(x["image"], y["image"]) and torch.equal(x["mask"], y["mask"])
    for i in range(len(files)):
        raw_a, raw_b = files.read(i), pack.read(i)
        np.testing.assert_array_equal(raw_a[0], raw_b[0])  # NaN positions equal too
        np.testing.assert_array_equal(raw_a[1], raw_b[1])
    for method in ("random", "spatial"):
        assert resolve_split(files, method, seed=4) == resolve_split(pack, method, seed=4)


def test_pack_of_zip_equals_pack_of_folder(synth_zip, packed, tmp_path):
    progress = []
    zipped = pack_dataset(synth_zip, tmp_path / "z.smpack", progress=lambda d, t: progress.append((d, t)))
    from_zip = PackedSource(zipped)
    from_folder = PackedSource(packed)
    assert progress[-1] == (32, 32) and len(progress) == 32
    np.testing.assert_array_equal(from_zip.images, from_folder.images)
    np.testing.assert_array_equal(from_zip.masks, from_folder.masks)
    assert from_zip.header.keys == from_folder.header.keys
    assert from_zip.header.official == from_folder.header.official


def test_pack_skips_unusable_patches(broken, tmp_path, caplog):
    bad = {broken.bad_band_count(0): broken.ref(0).id, broken.truncate(2): broken.ref(2).id,
           broken.all_nodata(3): broken.ref(3).id}
    path = pack_dataset(broken.root, tmp_path / "b.smpack")
    pack = PackedSource(path)
    assert set(pack.header.skipped) == set(bad)
    assert "12 bands" in pack.header.skipped[broken.ref(0).image]
    assert "skipping patch" in caplog.text
    assert not set(bad.values()) & {k.id for k in pack.header.keys}
    assert not set(bad.values()) & set(pack.header.official)
    files = SmallMinesDS(broken.root, split=None)
    from_pack = SmallMinesDS(path, split=None)
    assert files.ids == from_pack.ids and len(files) == len(broken.layout.patches) - 3
    for i in range(len(files)):
        assert torch.equal(files[i]["image"], from_pack[i]["image"])
        assert torch.equal(files[i]["mask"], from_pack[i]["mask"])
    # the trimmed masks block sits right after the images and the file has no slack
    for i, key in enumerate(pack.header.keys):
        ref = next(r for r in broken.layout.patches if r.key == key)
        np.testing.assert_array_equal(pack.read(i)[1], read_patch(ref)[1])


def test_pack_with_nothing_usable(broken, tmp_path):
    for i in range(len(broken.layout.patches)):
        broken.not_a_tiff(i)
    with pytest.raises(DataFormatError, match="none of its 8 patches can be read"):
        pack_dataset(broken.root, tmp_path / "x.smpack")
    assert not list(tmp_path.glob("*smpack*"))


def test_pack_without_split_files(broken, tmp_path):
    shutil.rmtree(broken.root / "data_splits")
    path = pack_dataset(broken.root, tmp_path / "n.smpack")
    assert PackedSource(path).header.official == {}
    with pytest.raises(SplitError, match="holds no official split"):
        SmallMinesDS(path, split="train")
    assert len(SmallMinesDS(path, split="train", splits="random")) > 0


def test_packed_source_pickles_small(packed):
    source = PackedSource(packed)
    source.read(0)  # open the maps
    blob = pickle.dumps(source)
    assert len(blob) < 50_000
    clone = pickle.loads(blob)
    np.testing.assert_array_equal(clone.read(5)[1], source.read(5)[1])


def test_corrupt_packs_are_named(packed, tmp_path):
    raw = packed.read_bytes()
    truncated = tmp_path / "t.smpack"
    truncated.write_bytes(raw[: len(raw) - 100])
    with pytest.raises(CorruptFileError) as info:
        PackedSource(truncated)
    assert info.value.path == str(truncated)
    garbled = tmp_path / "g.smpack"
    garbled.write_bytes(raw[:24] + b"\0" * 100)
    with pytest.raises(CorruptFileError, match="g.smpack"):
        PackedSource(garbled)
    other = tmp_path / "o.smpack"
    other.write_bytes(b"not a pack at all")
    with pytest.raises(CorruptFileError, match="not a readable zip"):
        PatchSource(other)


def test_reads_version_1_packs(packed, tmp_path):
    v2 = PackedSource(packed)
    header = v2.header.to_json()
    images, masks = np.asarray(v2.images), np.asarray(v2.masks)
    header["images_offset"] = 8192
    header["masks_offset"] = 8192 + images.nbytes
    blob = json.dumps(header).encode()
    old = tmp_path / "v1.smpack"
    with open(old, "wb") as fh:
        fh.write(MAGIC_V1 + struct.pack("<Q", len(blob)) + blob)
        fh.write(b"\0" * (8192 - 16 - len(blob)))
        fh.write(images.tobytes() + masks.tobytes())
    v1 = PatchSource(old)
    assert v1.ids == PatchSource(packed).ids
    np.testing.assert_array_equal(v1.read(7)[0], v2.read(7)[0])
    np.testing.assert_array_equal(v1.read(7)[1], v2.read(7)[1])


def test_pack_layout_argument(synth_root, tmp_path):
    layout = discover(synth_root)
    layout.patches = layout.patches[:3]
    assert len(PackedSource(pack_dataset(layout, tmp_path / "three.smpack"))) == 3
