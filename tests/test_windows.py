"""Pure window arithmetic: coverage, bounds, alignment, blending and stitching (hypothesis)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smallmines.data.windows import (
    ALIGN,
    Span,
    add_window,
    assemble,
    axis_weights,
    check_tiling,
    iter_windows,
    make_plan,
    pad_to_multiple,
    pad_window,
    taper,
    tile_axis,
    weight_sum,
)
from smallmines.errors import ConfigError

lengths = st.integers(1, 900)
sizes = st.sampled_from([32, 64, 96, 128, 256])


@st.composite
def tilings(draw: st.DrawFn) -> tuple[int, int, int]:
    size = draw(sizes)
    overlap = draw(st.sampled_from([o for o in range(0, size // 2 + 1, ALIGN)]))
    margin = draw(st.integers(0, max(overlap // 2 - 1, 0))) if overlap else 0
    return size, overlap, margin


@given(st.integers(0, 10_000), st.sampled_from([1, 8, 32]))
def test_pad_to_multiple(n: int, multiple: int) -> None:
    padded = pad_to_multiple(n, multiple)
    assert padded % multiple == 0 and n <= padded < n + multiple


@given(lengths, tilings())
def test_tile_axis_covers_every_pixel_inside_bounds(length: int, tiling: tuple[int, int, int]) -> None:
    size, overlap, margin = tiling
    spans = tile_axis(length, size, overlap)
    covered = np.zeros(length, int)
    for span in spans[:-1]:
        assert span.start % (size - overlap) == 0
    for span in spans:
        assert 0 <= span.start < span.stop <= length and span.start % ALIGN == 0
        assert span.size <= size
        covered[span.slice()] += 1
    assert covered.min() >= 1
    assert spans[-1].stop == length
    if len(spans) > 1:  # windows are whole: the last is shifted inward, padded by less than ALIGN pixels
        assert all(s.size == size for s in spans[:-1]) and size - ALIGN < spans[-1].size <= size
        assert all(a.stop - b.start == overlap for a, b in zip(spans[:-1], spans[1:-1], strict=False))
        assert spans[-2].stop - spans[-1].start >= overlap and spans[-2].start < spans[-1].start
        weights = axis_weights(spans, overlap, margin)
        np.testing.assert_allclose(weight_sum(spans, weights, length), 1.0, atol=1e-6)
        shared = spans[-2].stop - overlap - spans[-1].start  # the last window adds nothing before the strip
        assert (weights[-1][:shared] == 0).all()


@given(st.integers(1, 64).map(lambda k: 2 * k), st.integers(0, 40))
def test_taper_halves_sum_to_one(overlap: int, margin: int) -> None:
    margin = min(margin, overlap // 2 - 1) if overlap > 2 else 0
    ramp = taper(overlap, margin)
    np.testing.assert_allclose(ramp + ramp[::-1], 1.0, atol=1e-6)
    assert (ramp[:margin] == 0).all() and (np.diff(ramp) >= 0).all()


@settings(max_examples=60, deadline=None)
@given(lengths, lengths, tilings(), st.integers(64, 1024))
def test_plan_blocks_partition_and_weights_positive(height: int, width: int, tiling: tuple[int, int, int],
                                                    block: int) -> None:
    size, overlap, margin = tiling
    plan = make_plan(height, width, size, overlap, margin, block)
    assert plan.row_sum.min() > 0.99 and plan.col_sum.min() > 0.99
    assert plan.input_shape[0] % ALIGN == 0 and plan.input_shape[1] % ALIGN == 0
    cores = np.zeros((height, width), int)
    seen = []
    for block_id in plan.blocks():
        rows, cols = plan.core(block_id)
        cores[rows.slice(), cols.slice()] += 1
        f_rows, f_cols = plan.footprint(block_id)
        # a footprint spills only into the next block's core: by at most the overlap, or further when
        # that block starts with the last window, which is shifted inward to end at the scene edge
        for f, core, spans, groups, k in ((f_rows, rows, plan.rows, plan.row_groups, block_id[0]),
                                          (f_cols, cols, plan.cols, plan.col_groups, block_id[1])):
            assert f.start == core.start
            shifted_next = k + 1 < len(groups) and groups[k + 1][0] == len(spans) - 1
            assert f.stop <= (spans[-1].stop if shifted_next else min(core.stop + overlap, spans[-1].stop))
        seen.extend(plan.windows(block_id))
    assert (cores == 1).all()
    assert len(seen) == len(set(seen)) == plan.n_windows
    assert [w for _, w in iter_windows(plan)] == seen


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 300), st.integers(1, 300), tilings(), st.integers(64, 400), st.integers(0, 2**31))
def test_identity_model_stitches_back_its_input(height: int, width: int, tiling: tuple[int, int, int],
                                               block: int, seed: int) -> None:
    size, overlap, margin = tiling
    plan = make_plan(height, width, size, overlap, margin, block)
    image = np.random.default_rng(seed).random((height, width), dtype=np.float32)
    image[image < 0.05] = np.nan  # nodata passes through as nodata
    accumulators = {}
    for block_id in plan.blocks():
        rows, cols = plan.footprint(block_id)
        acc = np.zeros((rows.size, cols.size), np.float32)
        for window in plan.windows(block_id):
            w_rows, w_cols = plan.window(window)
            padded = pad_window(image[w_rows.slice(), w_cols.slice()], *plan.input_shape)
            assert padded.shape == plan.input_shape
            add_window(acc, (rows.start, cols.start), plan, window, padded[:w_rows.size, :w_cols.size])
        accumulators[block_id] = acc
    out = np.full_like(image, -1)
    for block_id in plan.blocks():
        rows, cols = plan.core(block_id)
        out[rows.slice(), cols.slice()] = assemble(plan, block_id, accumulators)
    np.testing.assert_allclose(out, image, rtol=1e-5, atol=1e-6, equal_nan=True)


def test_pad_window_reflects_without_repeating_the_edge() -> None:
    row = np.arange(3, dtype=np.float32)[None, None, :].repeat(2, axis=1)
    padded = pad_window(row, 2, 6)
    np.testing.assert_array_equal(padded[0, 0], [0, 1, 2, 1, 0, 1])
    with pytest.raises(ConfigError, match="larger than the network input"):
        pad_window(row, 1, 6)


@pytest.mark.parametrize(("size", "overlap", "margin", "match"), [
    (100, 0, 0, "window=100"), (256, 200, 0, "overlap=200"), (256, 48, 0, "overlap=48"),
    (256, 64, 32, "margin=32"), (256, 0, 4, "margin=4"),
])
def test_check_tiling_names_the_bad_value(size: int, overlap: int, margin: int, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        check_tiling(size, overlap, margin)


def test_small_scene_is_one_padded_window() -> None:
    plan = make_plan(40, 70, size=512, overlap=128)
    assert plan.rows == [Span(0, 40)] and plan.cols == [Span(0, 70)]
    assert plan.input_shape == (64, 96) and plan.blocks() == [(0, 0)]
