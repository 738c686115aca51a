"""The streaming engine: windows prepared by reader threads, batched inference, blended blocks.

A :class:`Job` holds everything needed to compute any block of the plan as picklable data.
Reader threads prepare the next windows (read, spectral indices, normalisation with the training
statistics, reflection padding at the scene edge) while the model runs; a bi-temporal job reads the
same window of two scenes on one grid and stacks their channels (``a:X...``, ``b:X...``), and its
model's class probabilities are blended plane by plane; each block's weighted
sums are returned to the caller (:func:`run_blocks`) or computed on Dask workers
(:func:`compute_block`). Peak memory depends on the window, batch and block sizes, never on the
scene size.
"""

from __future__ import annotations

import functools
import logging
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from smallmines.bands import compute_channels
from smallmines.cluster import dask_client
from smallmines.data.scene import Scene, SceneReader, aoi_mask
from smallmines.data.windows import BlockId, Plan, Span, WindowId, add_window, pad_window
from smallmines.mapping.predictors import ModelRef, Predictor, load_predictor

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------
# Blocks
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    """Everything needed to compute any block, as picklable data.

    Attributes:
        scene: the input scene.
        plan: windows and blocks of the output region.
        origin: scene ``(row, col)`` of the output region's first pixel.
        bands: raw bands read from the scene.
        channels: the model's channels (computed from ``bands``).
        mean: training mean of each channel.
        std: training std of each channel.
        model: the backend.
        batch_size: windows per forward pass (None: 8 on a GPU, else 1).
        readers: reader threads preparing windows ahead of the model (None: 8 on a GPU, else 2).
        aoi: area of interest as WKB in the scene CRS, or None.
        scene_b: the later scene of a bi-temporal job (on the grid of ``scene``), or None.
        classes: class planes the model's output blends into (0: one mining probability plane).

    """

    scene: Scene
    plan: Plan
    origin: tuple[int, int]
    bands: tuple[str, ...]
    channels: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    model: ModelRef
    batch_size: int | None
    readers: int | None
    aoi: bytes | None = None
    scene_b: Scene | None = None
    classes: int = 0

    @property
    def scenes(self) -> tuple[Scene, ...]:
        """The scenes read: one, or the earlier and the later of a bi-temporal job."""
        return (self.scene,) if self.scene_b is None else (self.scene, self.scene_b)

    def open(self) -> _Readers:
        """Readers of every scene (one per scene), for one thread."""
        return _Readers(tuple(scene.open() for scene in self.scenes))

    def scene_spans(self, rows: Span, cols: Span) -> tuple[Span, Span]:
        """Plan spans shifted to scene pixels."""
        r0, c0 = self.origin
        return Span(rows.start + r0, rows.stop + r0), Span(cols.start + c0, cols.stop + c0)

    def inside(self, rows: Span, cols: Span) -> np.ndarray | None:
        """AOI mask of a plan region (None without an AOI)."""
        if self.aoi is None:
            return None
        return aoi_mask(self.scene.grid, _geometry(self.aoi), *self.scene_spans(rows, cols))


@functools.lru_cache(maxsize=4)
def _geometry(wkb: bytes) -> Any:
    import shapely

    return shapely.from_wkb(wkb)


class _Readers:
    """The readers of a job's scenes, closed together."""

    def __init__(self, readers: tuple[SceneReader, ...]) -> None:
        self.readers = readers

    def __enter__(self) -> _Readers:
        return self

    def __exit__(self, *exc: object) -> None:
        for reader in self.readers:
            reader.close()


Prepared = tuple[np.ndarray, np.ndarray]
"""A window ready for the model: padded normalised ``(C, H, W)`` input and ``(h, w)`` valid mask."""


def prepare_window(job: Job, reader: SceneReader | _Readers, window: WindowId) -> Prepared | None:
    """Read, compute channels, normalise and pad one window; None when it has no valid pixel.

    Nodata (NaN) becomes 0 after normalisation, as in training; the valid mask marks pixels
    where every channel is valid (and inside the area of interest). A bi-temporal job's channels
    are the earlier scene's, then the later scene's, so a pixel is valid where both dates are.
    """
    rows, cols = job.plan.window(window)
    inside = job.inside(rows, cols)
    if inside is not None and not inside.any():
        return None
    readers = reader.readers if isinstance(reader, _Readers) else (reader,)
    spans = job.scene_spans(rows, cols)
    if len(readers) == 1:
        channels = compute_channels(readers[0].read(job.bands, *spans), job.channels, source_bands=job.bands)
    else:
        per_date = tuple(c.split(":", 1)[1] for c in job.channels[:len(job.channels) // 2])
        channels = np.concatenate([compute_channels(r.read(job.bands, *spans), per_date, source_bands=job.bands)
                                   for r in readers])
    valid = np.isfinite(channels).all(axis=0)
    if inside is not None:
        valid &= inside
    if not valid.any():
        return None
    mean = np.asarray(job.mean, np.float32)[:, None, None]
    std = np.asarray(job.std, np.float32)[:, None, None]
    x = (channels - mean) / std
    x[~np.isfinite(x)] = 0.0
    return pad_window(x.astype(np.float32, copy=False), *job.plan.input_shape), valid


@dataclass(frozen=True)
class _Failure:
    error: BaseException


def _put(box: queue.Queue, item: object, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            box.put(item, timeout=0.1)
            return
        except queue.Full:
            continue


def prefetch(job: Job, items: Sequence[tuple[BlockId, WindowId]], readers: int,
             depth: int) -> Iterator[tuple[BlockId, WindowId, Prepared | None]]:
    """Prepare windows in ``readers`` threads, up to ``depth`` ahead; yields them in order.

    Reader ``k`` prepares items ``k, k + n, ...`` with its own :class:`SceneReader` (rasterio
    datasets belong to the thread that opened them) into its own bounded queue.
    """
    n = max(1, min(readers, len(items)))
    boxes: list[queue.Queue] = [queue.Queue(maxsize=max(1, depth // n)) for _ in range(n)]
    stop = threading.Event()

    def read(k: int) -> None:
        try:
            with job.open() as reader:
                for _, window in items[k::n]:
                    if stop.is_set():
                        return
                    _put(boxes[k], prepare_window(job, reader, window), stop)
        except BaseException as exc:  # handed to the consumer, which re-raises it in order
            _put(boxes[k], _Failure(exc), stop)

    threads = [threading.Thread(target=read, args=(k,), name=f"smallmines-read-{k}", daemon=True) for k in range(n)]
    for thread in threads:
        thread.start()
    try:
        for i, (block, window) in enumerate(items):
            result = boxes[i % n].get()
            if isinstance(result, _Failure):
                raise result.error
            yield block, window, result
    finally:
        stop.set()
        for box in boxes:
            while not box.empty():
                box.get_nowait()
        for thread in threads:
            thread.join()


class _Stitcher:
    """Runs batches through the model and adds them into the current block's accumulator."""

    def __init__(self, job: Job, predictor: Predictor, batch_size: int,
                 on_block: Callable[[BlockId, np.ndarray], None]) -> None:
        self.job, self.predictor, self.batch_size, self.on_block = job, predictor, batch_size, on_block
        self.block: BlockId | None = None
        self.acc = np.zeros((0, 0), np.float32)
        self.origin = (0, 0)
        self.batch: list[tuple[WindowId, Prepared]] = []
        self.planes = (job.classes,) if job.classes else ()

    def add(self, block: BlockId, window: WindowId, prepared: Prepared | None) -> None:
        if block != self.block:
            self.finish()
            rows, cols = self.job.plan.footprint(block)
            self.block, self.origin = block, (rows.start, cols.start)
            self.acc = np.zeros((*self.planes, rows.size, cols.size), np.float32)
        if prepared is None:
            rows, cols = self.job.plan.window(window)
            nodata = np.full((*self.planes, rows.size, cols.size), np.nan, np.float32)
            add_window(self.acc, self.origin, self.job.plan, window, nodata)
            return
        self.batch.append((window, prepared))
        if len(self.batch) == self.batch_size:
            self.flush()

    def flush(self) -> None:
        if not self.batch:
            return
        probability = self.predictor(np.stack([x for _, (x, _) in self.batch]))
        for (window, (_, valid)), p in zip(self.batch, probability, strict=True):
            values = np.where(valid, p[..., : valid.shape[0], : valid.shape[1]], np.float32(np.nan))
            add_window(self.acc, self.origin, self.job.plan, window, values)
        self.batch = []

    def finish(self) -> None:
        if self.block is None:
            return
        self.flush()
        self.on_block(self.block, self.acc)
        self.block = None


def run_blocks(job: Job, blocks: Sequence[BlockId], on_block: Callable[[BlockId, np.ndarray], None],
               on_window: Callable[[], None] | None = None) -> None:
    """Compute blocks in this process, streaming windows through reader threads and the model.

    Args:
        job: what to compute.
        blocks: which blocks, in order.
        on_block: receives each finished block and its footprint accumulator (weighted sums).
        on_window: called after each window.

    """
    model = job.model.resolved()
    predictor, _ = load_predictor(model)
    batch_size = job.batch_size or (8 if model.cuda else 1)
    readers = job.readers or (8 if model.cuda else 2)
    stitcher = _Stitcher(job, predictor, batch_size, on_block)
    items = [(block, window) for block in blocks for window in job.plan.windows(block)]
    for block, window, prepared in prefetch(job, items, readers, depth=max(2 * batch_size, 2 * readers)):
        stitcher.add(block, window, prepared)
        if on_window is not None:
            on_window()
    stitcher.finish()


def compute_block(block: BlockId, job: Job) -> tuple[BlockId, np.ndarray]:
    """One block's accumulator (the Dask task)."""
    out: dict[BlockId, np.ndarray] = {}
    run_blocks(job, [block], out.__setitem__)
    return block, out[block]


def _run_distributed(job: Job, blocks: Sequence[BlockId], on_block: Callable[[BlockId, np.ndarray], None],
                     cluster: Any, workers: int | None) -> None:
    """Compute blocks on a Dask cluster (an address, a ``Client``, or a local one of ``workers``)."""
    from distributed import as_completed

    with dask_client(cluster, workers) as client:
        logger.info("distributing %d blocks over %s", len(blocks), client)
        shared = client.scatter(job, broadcast=True)
        futures = client.map(compute_block, list(blocks), job=shared, pure=False)
        for future in as_completed(futures):
            block, acc = future.result()
            on_block(block, acc)
            future.release()


