"""Window arithmetic for whole-scene inference: tiling, padding, blending weights, blocks.

Nothing here opens a file. Every function works on plain integers, spans and small numpy arrays,
so the scheme is tested exhaustively with hypothesis (every pixel covered, no window out of bounds,
an identity model stitched back into its input).

Along each axis of a scene of ``length`` pixels:

- **Windows** of ``size`` pixels start at multiples of ``stride = size - overlap``. ``size`` and
  ``overlap`` are multiples of ``align`` (32, the total downsampling of a five-stage encoder), so
  every window sits on the same pooling grid as the whole image and a network sees the same
  neighbourhood in a window as in the whole scene. The last window is shifted inward to end at the
  scene edge rounded up to a multiple of ``align`` (as TerraTorch's tiling does, but on the pooling
  grid), so it holds real pixels and at most ``align - 1`` reflected ones, exactly as the whole scene
  padded to ``align`` would: a window cut at the edge and mirror-padded by up to ``size - overlap``
  pixels degrades predictions there for networks with a large receptive field. A scene smaller than
  one window is one window of the scene, reflected to a multiple of ``align``.
- **Blending**: a window's weight is 1 inside and falls to 0 over the ``overlap`` pixels it
  shares with a neighbour: 0 for the ``margin`` pixels next to its edge (where a network's zero
  padding still shows), then a raised cosine. The two tapers of a shared strip sum to 1, and the
  stitched value is ``sum(weight * value) / sum(weight)``, so there are no seams and, for a network
  whose receptive field is within ``margin``, tiled output equals whole-image output exactly. The
  shifted last window shares more than ``overlap`` pixels with its neighbour: it gets zero weight
  where the neighbour is at full weight and its taper lies under the neighbour's, so it only adds
  the scene edge. Sides at the scene edge are not tapered.
- **Blocks** group ``per_block`` consecutive windows: the unit of work for a process, a Dask task
  and a resumable result. A block's *footprint* is the union of its windows; its *core* runs from
  its first window's start to the next block's first start, so cores partition the scene and a
  footprint spills only into the next block's core (by ``overlap`` pixels).

Weights are separable (row weight x column weight) and so is their sum over the grid, so the
normaliser of any region is the outer product of two 1-D sums and never has to be stored.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import NamedTuple

import numpy as np

from smallmines.errors import ConfigError

ALIGN = 32
"""Window sizes and strides are multiples of this (the output stride of a five-stage encoder)."""


class Span(NamedTuple):
    """A half-open pixel interval ``[start, stop)`` along one axis."""

    start: int
    stop: int

    @property
    def size(self) -> int:
        """Number of pixels in the span."""
        return self.stop - self.start

    def slice(self, origin: int = 0) -> slice:
        """Return the span as a slice into an array whose first pixel is at ``origin``."""
        return slice(self.start - origin, self.stop - origin)


def pad_to_multiple(n: int, multiple: int = ALIGN) -> int:
    """Smallest multiple of ``multiple`` that is at least ``n`` (``n >= 0``)."""
    return -(-n // multiple) * multiple


def intersect(a: Span, b: Span) -> Span | None:
    """Return the common part of two spans, or None when they do not overlap."""
    start, stop = max(a.start, b.start), min(a.stop, b.stop)
    return Span(start, stop) if start < stop else None


def check_tiling(size: int, overlap: int, margin: int, align: int = ALIGN) -> None:
    """Validate a tiling; raise ConfigError naming the bad value and what would be valid.

    Args:
        size: window side in pixels; a positive multiple of ``align``.
        overlap: pixels shared by neighbouring windows; a multiple of ``align``, at most ``size // 2``.
        margin: pixels next to a shared window edge that get zero weight; ``2 * margin < overlap``,
            or 0 without overlap.
        align: the network's required input multiple.

    """
    if size <= 0 or size % align:
        raise ConfigError(f"window={size}: must be a positive multiple of {align}, e.g. "
                          f"{max(align, pad_to_multiple(max(size, 1), align))}")
    if overlap < 0 or overlap % align or 2 * overlap > size:
        raise ConfigError(f"overlap={overlap}: must be a multiple of {align} between 0 and window/2 "
                          f"({size // 2}); 128 suits windows of 512 to 2048")
    if margin < 0 or (overlap and 2 * margin >= overlap) or (not overlap and margin):
        raise ConfigError(f"margin={margin}: must be at least 0 and less than overlap/2 "
                          f"({max(overlap // 2 - 1, 0)}), e.g. overlap/4 = {overlap // 4}")


def window_length(length: int, size: int, align: int = ALIGN) -> int:
    """Network input length along an axis: ``size``, or the axis padded to ``align`` if shorter."""
    return min(size, pad_to_multiple(length, align))


def tile_axis(length: int, size: int, overlap: int, align: int = ALIGN) -> list[Span]:
    """Window spans along one axis, inside ``[0, length)``.

    Starts are multiples of ``size - overlap``, except the last window's, which is shifted inward so
    that the window ends at the axis padded to a multiple of ``align``: it holds the scene edge and at
    most ``align - 1`` pixels of padding, as a whole-scene pass does. An axis shorter than a window is
    one span.
    """
    n = window_length(length, size, align)
    if n >= length:
        return [Span(0, length)]
    padded = pad_to_multiple(length, align)
    stride = n - overlap
    spans = []
    start = 0
    while start + n < padded:
        spans.append(Span(start, start + n))
        start += stride
    spans.append(Span(padded - n, length))
    return spans


def taper(overlap: int, margin: int) -> np.ndarray:
    """Weights of the ``overlap`` pixels next to a shared edge, from the edge inwards.

    Zero for the first ``margin`` pixels, then a raised cosine up to 1; ``taper + taper[::-1] == 1``.
    """
    d = np.arange(overlap, dtype=np.float64)
    t = np.clip((d - margin + 0.5) / (overlap - 2 * margin), 0.0, 1.0)
    return (0.5 - 0.5 * np.cos(np.pi * t)).astype(np.float32)


def span_weights(size: int, overlap: int, margin: int, start_taper: bool, end_taper: bool) -> np.ndarray:
    """1-D blending weights of a window of ``size`` pixels, tapered on the sides it shares."""
    weights = np.ones(size, np.float32)
    if overlap:
        ramp = taper(overlap, margin)
        if start_taper:
            weights[:overlap] *= ramp
        if end_taper:
            weights[size - overlap:] *= ramp[::-1]
    return weights


def axis_weights(spans: list[Span], overlap: int, margin: int) -> list[np.ndarray]:
    """Blending weights of each span of :func:`tile_axis` (outer sides untapered).

    A window that starts further back than ``overlap`` before its neighbour's end (the shifted last
    window) is zero up to where the neighbour's taper begins, and tapers in under it from there.
    """
    last = len(spans) - 1
    weights = []
    for i, span in enumerate(spans):
        lead = max(spans[i - 1].stop - overlap - span.start, 0) if i else 0
        w = np.zeros(span.size, np.float32)
        w[lead:] = span_weights(span.size - lead, overlap, margin, i > 0, i < last)
        weights.append(w)
    return weights


def weight_sum(spans: list[Span], weights: list[np.ndarray], length: int) -> np.ndarray:
    """Sum of all windows' weights at each pixel of the axis (float64, positive everywhere)."""
    total = np.zeros(length, np.float64)
    for span, w in zip(spans, weights, strict=True):
        total[span.slice()] += w
    return total


def group_windows(count: int, per_block: int) -> list[range]:
    """Split ``count`` consecutive windows into runs of ``per_block`` (the last may be shorter)."""
    return [range(i, min(i + per_block, count)) for i in range(0, count, per_block)]


def pad_amounts(height: int, width: int, target_height: int, target_width: int) -> tuple[int, int]:
    """Rows and columns to add at the bottom and right to reach the target shape."""
    if height > target_height or width > target_width:
        raise ConfigError(f"window {height}x{width} is larger than the network input "
                          f"{target_height}x{target_width}")
    return target_height - height, target_width - width


def pad_window(array: np.ndarray, target_height: int, target_width: int) -> np.ndarray:
    """Pad ``(..., H, W)`` at the bottom and right to the target shape by reflection.

    Reflection (mirroring without repeating the edge pixel) keeps textures plausible where a
    window hangs over the scene edge; zeros would look like a dark border to the network.
    """
    rows, cols = pad_amounts(array.shape[-2], array.shape[-1], target_height, target_width)
    if not rows and not cols:
        return array
    pad = [(0, 0)] * (array.ndim - 2) + [(0, rows), (0, cols)]
    return np.pad(array, pad, mode="reflect")


BlockId = tuple[int, int]
"""A block's (row, column) position in the block grid."""
WindowId = tuple[int, int]
"""A window's (row, column) position in the window grid."""


@dataclass(frozen=True)
class Plan:
    """The tiling of a ``height x width`` scene into windows and blocks (see the module docs).

    Build it with :func:`make_plan`. Blocks are numbered row by row.
    """

    height: int
    width: int
    size: int
    overlap: int
    margin: int
    per_block: int
    align: int = ALIGN

    @cached_property
    def rows(self) -> list[Span]:
        """Window spans along the rows."""
        return tile_axis(self.height, self.size, self.overlap, self.align)

    @cached_property
    def cols(self) -> list[Span]:
        """Window spans along the columns."""
        return tile_axis(self.width, self.size, self.overlap, self.align)

    @cached_property
    def row_weights(self) -> list[np.ndarray]:
        """1-D weights of each row span."""
        return axis_weights(self.rows, self.overlap, self.margin)

    @cached_property
    def col_weights(self) -> list[np.ndarray]:
        """1-D weights of each column span."""
        return axis_weights(self.cols, self.overlap, self.margin)

    @cached_property
    def row_sum(self) -> np.ndarray:
        """Sum of row weights at each row of the scene."""
        return weight_sum(self.rows, self.row_weights, self.height)

    @cached_property
    def col_sum(self) -> np.ndarray:
        """Sum of column weights at each column of the scene."""
        return weight_sum(self.cols, self.col_weights, self.width)

    @property
    def input_shape(self) -> tuple[int, int]:
        """``(height, width)`` of every network input (windows are padded to it)."""
        return window_length(self.height, self.size, self.align), window_length(self.width, self.size, self.align)

    @cached_property
    def row_groups(self) -> list[range]:
        """Window-row indices of each block row."""
        return group_windows(len(self.rows), self.per_block)

    @cached_property
    def col_groups(self) -> list[range]:
        """Window-column indices of each block column."""
        return group_windows(len(self.cols), self.per_block)

    @property
    def n_windows(self) -> int:
        """Number of windows in the scene."""
        return len(self.rows) * len(self.cols)

    def blocks(self) -> list[BlockId]:
        """Every block, row by row."""
        return [(i, j) for i in range(len(self.row_groups)) for j in range(len(self.col_groups))]

    def windows(self, block: BlockId) -> list[WindowId]:
        """List the windows of a block, row by row."""
        return [(i, j) for i in self.row_groups[block[0]] for j in self.col_groups[block[1]]]

    def window(self, window: WindowId) -> tuple[Span, Span]:
        """Row and column span of a window (clipped to the scene)."""
        return self.rows[window[0]], self.cols[window[1]]

    def window_weights(self, window: WindowId) -> np.ndarray:
        """2-D blending weights of a window, shaped like its clipped span."""
        return np.outer(self.row_weights[window[0]], self.col_weights[window[1]])

    def footprint(self, block: BlockId) -> tuple[Span, Span]:
        """Row and column span covered by a block's windows."""
        rows, cols = self.row_groups[block[0]], self.col_groups[block[1]]
        return (Span(self.rows[rows[0]].start, self.rows[rows[-1]].stop),
                Span(self.cols[cols[0]].start, self.cols[cols[-1]].stop))

    def core(self, block: BlockId) -> tuple[Span, Span]:
        """Row and column span of the output a block is assembled into; cores partition the scene."""
        return (_core(self.rows, self.row_groups, block[0], self.height),
                _core(self.cols, self.col_groups, block[1], self.width))

    def contributors(self, block: BlockId) -> list[BlockId]:
        """Blocks whose footprint overlaps this block's core: itself and a few before it.

        Usually up to three (the previous block row and column); the shifted last window can make the
        footprint of a block two rows or columns back reach the last core too.
        """
        core_rows, core_cols = self.core(block)
        rows = _reaching(self.rows, self.row_groups, block[0], core_rows)
        cols = _reaching(self.cols, self.col_groups, block[1], core_cols)
        return [(i, j) for i in rows for j in cols]

    def normaliser(self, rows: Span, cols: Span) -> np.ndarray:
        """Sum of all window weights over a region (float32), the divisor of the stitched sum."""
        return np.outer(self.row_sum[rows.slice()], self.col_sum[cols.slice()]).astype(np.float32)


def _reaching(spans: list[Span], groups: list[range], k: int, core: Span) -> list[int]:
    """Block indices along an axis, up to ``k``, whose windows reach into ``core`` (ascending)."""
    out = []
    for i in range(k, -1, -1):  # footprints end further along as i grows: stop at the first that ends before
        if spans[groups[i][-1]].stop <= core.start:
            break
        out.append(i)
    return out[::-1]


def _core(spans: list[Span], groups: list[range], k: int, length: int) -> Span:
    stop = spans[groups[k + 1][0]].start if k + 1 < len(groups) else length
    return Span(spans[groups[k][0]].start, stop)


def make_plan(height: int, width: int, size: int = 1024, overlap: int = 128, margin: int | None = None,
              block: int = 4096, align: int = ALIGN) -> Plan:
    """Tile a scene into windows and blocks.

    Args:
        height: scene rows.
        width: scene columns.
        size: window side (network input), a multiple of ``align``.
        overlap: pixels shared by neighbouring windows, a multiple of ``align``, at most ``size // 2``.
        margin: zero-weight pixels at a shared edge; default ``overlap // 4``.
        block: approximate block side in pixels (rounded to whole windows, at least one).
        align: the network's input multiple.

    Raises:
        ConfigError: invalid sizes (the message says what would be valid).

    """
    if height <= 0 or width <= 0:
        raise ConfigError(f"scene of {height} x {width} pixels has nothing to map")
    margin = overlap // 4 if margin is None else margin
    check_tiling(size, overlap, margin, align)
    stride = size - overlap
    per_block = max(1, math.ceil((block - overlap) / stride))
    return Plan(height, width, size, overlap, margin, per_block, align)


def add_window(acc: np.ndarray, origin: tuple[int, int], plan: Plan, window: WindowId, values: np.ndarray) -> None:
    """Add a window's weighted values into a block accumulator (NaN marks nodata and propagates).

    Args:
        acc: ``(H, W)`` (or ``(K, H, W)``, one plane per class) float32 accumulator of a block footprint
            whose first pixel is ``origin``.
        origin: scene ``(row, col)`` of ``acc[..., 0, 0]``.
        plan: the tiling.
        window: which window.
        values: ``(h, w)`` (or ``(K, h, w)``) values of the window's clipped span.

    """
    rows, cols = plan.window(window)
    acc[..., rows.slice(origin[0]), cols.slice(origin[1])] += values * plan.window_weights(window)


def assemble(plan: Plan, block: BlockId, accumulators: Mapping[BlockId, np.ndarray]) -> np.ndarray:
    """Stitched values of a block's core from the accumulators of its contributors.

    Args:
        plan: the tiling.
        block: the block whose core to assemble.
        accumulators: footprint accumulators of (at least) ``plan.contributors(block)``, e.g.
            memory-mapped arrays; only the parts that overlap the core are read.

    Returns:
        ``(h, w)`` (or ``(K, h, w)`` for accumulators of ``K`` planes) float32 core values; NaN where
        any contributing window saw nodata.

    """
    core_rows, core_cols = plan.core(block)
    contributors = plan.contributors(block)
    planes = accumulators[contributors[0]].shape[:-2]
    total = np.zeros((*planes, core_rows.size, core_cols.size), np.float32)
    for other in contributors:
        rows, cols = plan.footprint(other)
        r, c = intersect(rows, core_rows), intersect(cols, core_cols)
        total[..., r.slice(core_rows.start), c.slice(core_cols.start)] += \
            accumulators[other][..., r.slice(rows.start), c.slice(cols.start)]
    return total / plan.normaliser(core_rows, core_cols)


def iter_windows(plan: Plan) -> Iterator[tuple[BlockId, WindowId]]:
    """Every (block, window) pair in processing order: block by block, row by row within a block."""
    for block in plan.blocks():
        for window in plan.windows(block):
            yield block, window
