"""Whole-scene mapping: from a model file and a scene to georeferenced mine maps and polygons.

:func:`map_scene` is the one entry point (``smallmines map`` calls it). The steps:

1. **Scene** (:mod:`smallmines.scene`): open the stacked or per-sensor rasters, align them on the
   10 m grid, optionally restrict to an area of interest; fail early, naming any band the model
   needs and the scene lacks.
2. **Guards**: sample the scene and compare each band with the training statistics the model
   carries; refuse a scene off by orders of magnitude or with bands in another order (``--scale``,
   ``--band-order`` fix it, ``--force`` overrides), warn when it is far from the training data.
3. **Inference** (:mod:`smallmines.windows` for the arithmetic): overlapping windows aligned to
   the network's stride, smooth blending weights, batched, with reader threads preparing the next
   windows (read, spectral indices, normalisation with the *training* statistics, reflection
   padding at the scene edge) while the model runs. Work is grouped into blocks; each finished
   block's weighted sums go to ``.work/blocks`` beside a manifest, so an interrupted run resumes
   where it stopped and Dask workers can compute blocks anywhere. Backends: PyTorch on CPU or
   CUDA (bf16 autocast on GPU, channels-last), or ONNX Runtime.
4. **Assembly**: block cores are stitched from their contributors' sums, tile by tile, into
   ``probability.tif`` and ``mines.tif`` (Cloud-Optimised GeoTIFFs in the scene CRS), polygons
   traced into ``mines.gpkg`` (``id``, ``area_ha``, ``mean_prob``), and ``summary.json`` written.
   Polygons smaller than ``min_area_ha`` are dropped from both the GeoPackage and ``mines.tif``,
   so the two always agree. Every output is written under a temporary name and renamed into place.

Peak memory depends on the window, batch and block sizes, never on the scene size.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import queue
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import torch
from rasterio.windows import Window

from smallmines.bands import MASK_NODATA, compute_channels, required_bands
from smallmines.errors import CheckpointError, ConfigError
from smallmines.export import INPUT_NAME, OUTPUT_NAME, onnx_card, onnx_session, softmax_mining
from smallmines.models import ModelCard, load_model
from smallmines.scene import (
    Grid,
    Scene,
    SceneCheck,
    SceneReader,
    aoi_mask,
    aoi_region,
    compare_to_training,
    enforce,
    load_aoi,
    open_scene,
    parse_scale,
    sample_scene,
)
from smallmines.vector import areas_ha, label_tile, pixel_areas_m2, polygonize, write_polygons
from smallmines.windows import BlockId, Plan, Span, WindowId, add_window, assemble, make_plan, pad_window

logger = logging.getLogger(__name__)

DEFAULT_WINDOW = 1024
DEFAULT_OVERLAP = 128
DEFAULT_BLOCK = 2048
DEFAULT_MIN_AREA_HA = 0.1
PROB_NODATA = -1.0
WORK_DIR = ".work"
PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
OUTPUTS = {"probability": "probability.tif", "mines": "mines.tif", "polygons": "mines.gpkg", "summary": "summary.json"}
COG_OPTIONS = {"compress": "DEFLATE", "blocksize": 512, "bigtiff": "IF_SAFER", "num_threads": "ALL_CPUS"}
TEMP_TIFF = {"driver": "GTiff", "tiled": True, "blockxsize": 512, "blockysize": 512, "bigtiff": "IF_SAFER"}

Progress = Callable[[float, float], None]
"""``progress(done_km2, total_km2)``, called as windows finish."""


# ----------------------------------------------------------------------------------------------
# Backends
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelRef:
    """How to obtain a predictor, as picklable data (Dask workers load their own copy).

    Attributes:
        checkpoint: ``model.pt`` or Lightning ``.ckpt`` (PyTorch backend).
        onnx: exported ``.onnx`` file (ONNX Runtime backend); takes precedence.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (``auto`` is resolved where the model runs,
            so a CPU-only client can drive GPU workers).
        precision: ``auto``, ``fp32``, ``bf16`` or ``fp16`` (autocast; PyTorch only).
        threads: intra-op threads (None: the library default).

    """

    checkpoint: str | None
    onnx: str | None
    device: str
    precision: str
    threads: int | None = None

    @property
    def engine(self) -> str:
        """``onnxruntime`` or ``torch``."""
        return "onnxruntime" if self.onnx else "torch"

    @property
    def path(self) -> str:
        """The model file that runs."""
        return self.onnx or self.checkpoint or ""

    @property
    def cuda(self) -> bool:
        """Whether the model runs on a GPU (after :meth:`resolved`)."""
        return self.device.startswith("cuda")

    def resolved(self) -> ModelRef:
        """Resolve ``auto`` device and precision on this machine.

        Raises:
            ConfigError: an unknown or unavailable device or precision.

        """
        device = resolve_device(self.device, self.engine)
        return replace(self, device=device, precision=resolve_precision(self.precision, device, self.engine))


def _gpu(engine: str) -> bool:
    if engine == "onnxruntime":
        import onnxruntime

        return "CUDAExecutionProvider" in onnxruntime.get_available_providers()
    return torch.cuda.is_available()


def resolve_device(device: str, engine: str = "torch") -> str:
    """``auto`` becomes ``cuda`` when the engine can use a GPU here, else ``cpu``.

    Raises:
        ConfigError: an unknown device, or CUDA asked for without a GPU.

    """
    if device == "auto":
        return "cuda" if _gpu(engine) else "cpu"
    if device == "cpu":
        return device
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device={device!r} but no CUDA GPU is visible to torch; use --device cpu")
        return device
    raise ConfigError(f"device={device!r}: choose auto, cpu, cuda or cuda:N")


def resolve_precision(precision: str, device: str, engine: str) -> str:
    """``auto`` becomes bf16 on a GPU that supports it (else fp16), fp32 on CPU and for ONNX.

    Raises:
        ConfigError: an unknown precision, or reduced precision with ONNX Runtime.

    """
    if precision == "auto":
        if engine == "onnxruntime" or not device.startswith("cuda"):
            return "fp32"
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if precision not in PRECISIONS:
        raise ConfigError(f"precision={precision!r}: choose auto, {', '.join(PRECISIONS)}")
    if engine == "onnxruntime" and precision != "fp32":
        raise ConfigError("an exported ONNX graph runs in fp32; drop --precision or map with the checkpoint")
    return precision


class TorchPredictor:
    """Mining probability from a PyTorch network: channels-last, inference mode, autocast."""

    def __init__(self, network: torch.nn.Module, device: str, precision: str) -> None:
        self.device = torch.device(device)
        self.dtype = PRECISIONS[precision]
        self.network = network.to(self.device, memory_format=torch.channels_last).eval()
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True

    @torch.inference_mode()
    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """``(N, C, H, W)`` float32 normalised input to ``(N, H, W)`` float32 probability."""
        x = torch.from_numpy(batch)
        if self.device.type == "cuda":
            x = x.pin_memory().to(self.device, non_blocking=True)
        x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype != torch.float32):
            logits = self.network(x)
        return torch.softmax(logits.float(), dim=1)[:, 1].cpu().numpy()


class OnnxPredictor:
    """Mining probability from an exported ONNX graph in ONNX Runtime."""

    def __init__(self, path: str, device: str, threads: int | None) -> None:
        self.session = onnx_session(path, device, threads)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """``(N, C, H, W)`` float32 normalised input to ``(N, H, W)`` float32 probability."""
        logits = self.session.run([OUTPUT_NAME], {INPUT_NAME: batch})[0]
        return softmax_mining(logits)


Predictor = Callable[[np.ndarray], np.ndarray]


def load_predictor(ref: ModelRef) -> tuple[Predictor, ModelCard]:
    """Load a predictor and its model card, cached per process (so a Dask worker loads a model once).

    The cache knows the model file's size and modification time, so a retrained file at the same
    path is loaded again. ``ref`` must be :meth:`ModelRef.resolved`.
    """
    try:
        stat = os.stat(ref.path)
    except OSError as exc:
        raise CheckpointError(f"{ref.path}: model file not found ({exc.strerror})") from exc
    return _load_predictor(ref, (stat.st_size, stat.st_mtime_ns))


@functools.lru_cache(maxsize=2)
def _load_predictor(ref: ModelRef, stamp: tuple[int, int]) -> tuple[Predictor, ModelCard]:
    if ref.threads:
        torch.set_num_threads(ref.threads)
    if ref.onnx:
        return OnnxPredictor(ref.onnx, ref.device, ref.threads), onnx_card(ref.onnx)
    network, card = load_model(ref.checkpoint or "", map_location="cpu")
    return TorchPredictor(network, ref.device, ref.precision), card


def read_card(ref: ModelRef) -> ModelCard:
    """Read the model card alone (for the client of a cluster, which runs no model)."""
    return onnx_card(ref.onnx) if ref.onnx else load_model(ref.checkpoint or "")[1]


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


Prepared = tuple[np.ndarray, np.ndarray]
"""A window ready for the model: padded normalised ``(C, H, W)`` input and ``(h, w)`` valid mask."""


def prepare_window(job: Job, reader: SceneReader, window: WindowId) -> Prepared | None:
    """Read, compute channels, normalise and pad one window; None when it has no valid pixel.

    Nodata (NaN) becomes 0 after normalisation, as in training; the valid mask marks pixels
    where every channel is valid (and inside the area of interest).
    """
    rows, cols = job.plan.window(window)
    inside = job.inside(rows, cols)
    if inside is not None and not inside.any():
        return None
    raw = reader.read(job.bands, *job.scene_spans(rows, cols))
    channels = compute_channels(raw, job.channels, source_bands=job.bands)
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
            with job.scene.open() as reader:
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

    def add(self, block: BlockId, window: WindowId, prepared: Prepared | None) -> None:
        if block != self.block:
            self.finish()
            rows, cols = self.job.plan.footprint(block)
            self.block, self.origin = block, (rows.start, cols.start)
            self.acc = np.zeros((rows.size, cols.size), np.float32)
        if prepared is None:
            rows, cols = self.job.plan.window(window)
            nodata = np.full((rows.size, cols.size), np.nan, np.float32)
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
            values = np.where(valid, p[: valid.shape[0], : valid.shape[1]], np.float32(np.nan))
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
    from distributed import Client, LocalCluster, as_completed

    with ExitStack() as stack:
        if isinstance(cluster, Client):
            client = cluster
        elif cluster:
            client = stack.enter_context(Client(cluster))
        else:
            local = stack.enter_context(LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                                     dashboard_address=None))
            client = stack.enter_context(Client(local))
        logger.info("distributing %d blocks over %s", len(blocks), client)
        shared = client.scatter(job, broadcast=True)
        futures = client.map(compute_block, list(blocks), job=shared, pure=False)
        for future in as_completed(futures):
            block, acc = future.result()
            on_block(block, acc)
            future.release()


# ----------------------------------------------------------------------------------------------
# Work folder (resume)
# ----------------------------------------------------------------------------------------------


class WorkFolder:
    """Finished blocks on disk beside a manifest; a block file exists only once complete."""

    def __init__(self, root: Path, fingerprint: dict[str, Any]) -> None:
        self.root = root
        self.blocks = root / "blocks"
        self.fingerprint = json.loads(json.dumps(fingerprint, default=str))

    def open(self, resume: bool) -> set[BlockId]:
        """Create or reuse the folder; returns the blocks already done (none if inputs changed)."""
        manifest = self.root / "manifest.json"
        old = None
        if manifest.is_file():
            try:
                old = json.loads(manifest.read_text()).get("fingerprint")
            except (OSError, json.JSONDecodeError):
                old = None
        if self.blocks.is_dir() and (not resume or old != self.fingerprint):
            if resume:
                logger.warning("%s holds blocks of another run (model, inputs or settings differ); starting over",
                               self.root)
            shutil.rmtree(self.blocks)
        self.blocks.mkdir(parents=True, exist_ok=True)
        _write_json(manifest, {"fingerprint": self.fingerprint, "created": _now()})
        done = set()
        for path in self.blocks.glob("*.npy"):
            i, _, j = path.stem.partition("_")
            done.add((int(i), int(j)))
        return done

    def path(self, block: BlockId) -> Path:
        """File of a block's accumulator."""
        return self.blocks / f"{block[0]}_{block[1]}.npy"

    def save(self, block: BlockId, acc: np.ndarray) -> None:
        """Store a finished block atomically."""
        final = self.path(block)
        tmp = final.with_name(f".{final.name}.tmp")
        with open(tmp, "wb") as fh:
            np.save(fh, acc)
        os.replace(tmp, final)

    def load(self, block: BlockId) -> np.ndarray:
        """Open a block's accumulator, memory-mapped."""
        return np.load(self.path(block), mmap_mode="r")


def _file_id(path: str) -> list[Any]:
    stat = os.stat(path)
    return [os.path.abspath(path), stat.st_size, stat.st_mtime_ns]


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fingerprint(job: Job) -> dict[str, Any]:
    plan = job.plan
    return {
        "model": _sha256(job.model.path), "engine": job.model.engine, "precision": job.model.precision,
        "inputs": [_file_id(s.path) for s in job.scene.sources], "scene": job.scene.describe(),
        "origin": list(job.origin), "channels": list(job.channels), "mean": list(job.mean), "std": list(job.std),
        "plan": [plan.height, plan.width, plan.size, plan.overlap, plan.margin, plan.per_block, plan.align],
        "aoi": hashlib.sha256(job.aoi).hexdigest() if job.aoi else None,
    }


# ----------------------------------------------------------------------------------------------
# Outputs
# ----------------------------------------------------------------------------------------------


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    os.replace(tmp, path)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _temp_raster(path: Path, grid: Grid, dtype: str, nodata: float) -> Any:
    return rasterio.open(path, "w", **TEMP_TIFF, width=grid.width, height=grid.height, count=1, dtype=dtype,
                         crs=rasterio.crs.CRS.from_wkt(grid.crs), transform=grid.transform, nodata=nodata)


def _to_cog(src: Path, dst: Path, resampling: str, predictor: int, description: str) -> None:
    """Copy a tiled GeoTIFF into a compressed Cloud-Optimised GeoTIFF, atomically."""
    from rasterio.shutil import copy

    with rasterio.open(src, "r+") as ds:
        ds.set_band_description(1, description)
    tmp = dst.with_name(f".{dst.stem}.tmp{dst.suffix}")
    copy(src, tmp, driver="COG", overview_resampling=resampling, predictor=predictor, **COG_OPTIONS)
    os.replace(tmp, dst)


@dataclass
class _Areas:
    scene_m2: float = 0.0
    valid_m2: float = 0.0
    mined_raw_m2: float = 0.0
    mined_m2: float = 0.0
    pixels: int = 0
    valid_pixels: int = 0


def _stitch(job: Job, work: WorkFolder, grid: Grid, threshold: float, prob_path: Path, raw_path: Path) -> _Areas:
    """Assemble block cores into the probability raster and the thresholded raw mask."""
    plan, areas = job.plan, _Areas()
    with _temp_raster(prob_path, grid, "float32", PROB_NODATA) as prob_dst, \
            _temp_raster(raw_path, grid, "uint8", 0) as raw_dst:
        for block in plan.blocks():
            rows, cols = plan.core(block)
            probability = assemble(plan, block, {b: work.load(b) for b in plan.contributors(block)})
            valid = np.isfinite(probability)
            inside = job.inside(rows, cols)
            pixel = pixel_areas_m2(grid.transform, grid.crs, rows.start, rows.size)[:, None]
            mined = valid & (probability >= threshold)
            areas.scene_m2 += float((pixel * (inside if inside is not None else np.ones(cols.size))).sum())
            areas.valid_m2 += float((pixel * valid).sum())
            areas.mined_raw_m2 += float((pixel * mined).sum())
            areas.pixels += int(inside.sum()) if inside is not None else rows.size * cols.size
            areas.valid_pixels += int(valid.sum())
            window = Window(cols.start, rows.start, cols.size, rows.size)
            prob_dst.write(np.where(valid, np.clip(probability, 0, 1), np.float32(PROB_NODATA)), 1, window=window)
            raw_dst.write(mined.astype(np.uint8), 1, window=window)
    return areas


def _finalise_mask(job: Job, grid: Grid, prob_path: Path, polygons: Sequence[Any], mines_path: Path,
                   areas: _Areas) -> np.ndarray:
    """Write the mine mask of the kept polygons; returns each polygon's mean probability."""
    import shapely

    plan = job.plan
    tree = shapely.STRtree(polygons)
    sums = np.zeros(len(polygons) + 1)
    counts = np.zeros(len(polygons) + 1)
    with rasterio.open(prob_path) as prob_src, _temp_raster(mines_path, grid, "uint8", MASK_NODATA) as dst:
        for block in plan.blocks():
            rows, cols = plan.core(block)
            window = Window(cols.start, rows.start, cols.size, rows.size)
            probability = prob_src.read(1, window=window)
            labels = label_tile(polygons, tree, grid.sub(rows, cols).transform, (rows.size, cols.size))
            sums += np.bincount(labels.ravel(), weights=probability.ravel(), minlength=len(sums))
            counts += np.bincount(labels.ravel(), minlength=len(counts))
            mines = np.where(probability == PROB_NODATA, np.uint8(MASK_NODATA), (labels > 0).astype(np.uint8))
            pixel = pixel_areas_m2(grid.transform, grid.crs, rows.start, rows.size)[:, None]
            areas.mined_m2 += float((pixel * (mines == 1)).sum())
            dst.write(mines, 1, window=window)
    return (sums / np.maximum(counts, 1))[1:]


# ----------------------------------------------------------------------------------------------
# Entry point
# ----------------------------------------------------------------------------------------------


@dataclass
class MapResult:
    """Paths of a finished map and its summary (also in ``summary.json``)."""

    out_dir: Path
    probability: Path
    mines: Path
    polygons: Path
    summary_path: Path
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def mined_area_ha(self) -> float:
        """Total mapped mining area (after the minimum-area filter), hectares."""
        return float(self.summary["areas"]["mined_ha"])

    @property
    def check(self) -> dict[str, Any]:
        """The band comparison with the training statistics."""
        return dict(self.summary["band_check"])


def _model_ref(checkpoint: str | Path | None, onnx: str | Path | None, device: str, precision: str,
               threads: int | None) -> ModelRef:
    if checkpoint is not None and Path(checkpoint).suffix.lower() == ".onnx":
        checkpoint, onnx = (None, checkpoint) if onnx is None else (checkpoint, onnx)
    if checkpoint is None and onnx is None:
        raise ConfigError("no model given: pass a checkpoint (model.pt, .ckpt) or --onnx model.onnx")
    return ModelRef(str(checkpoint) if checkpoint else None, str(onnx) if onnx else None, device, precision, threads)


def _check_cards(ref: ModelRef, card: ModelCard) -> None:
    if ref.onnx and ref.checkpoint:
        other = load_model(ref.checkpoint)[1]
        if other.channels != card.channels:
            raise ConfigError(f"{ref.onnx} expects channels {list(card.channels)} but {ref.checkpoint} "
                              f"{list(other.channels)}; export the checkpoint again")


def map_scene(
    checkpoint: str | Path | None,
    out_dir: str | Path,
    stacked: str | Path | Sequence[str | Path] | None = None,
    s2: str | Path | Sequence[str | Path] | None = None,
    s1: str | Path | Sequence[str | Path] | None = None,
    dem: str | Path | Sequence[str | Path] | None = None,
    aoi: str | Path | None = None,
    *,
    window: int = DEFAULT_WINDOW,
    overlap: int = DEFAULT_OVERLAP,
    margin: int | None = None,
    block: int = DEFAULT_BLOCK,
    batch_size: int | None = None,
    device: str = "auto",
    precision: str = "auto",
    onnx: str | Path | None = None,
    cluster: Any = None,
    workers: int | None = None,
    readers: int | None = None,
    threads: int | None = None,
    scale: str | float | dict[str, float] | None = None,
    band_order: str | Sequence[str] | None = None,
    force: bool = False,
    threshold: float | None = None,
    min_area_ha: float = DEFAULT_MIN_AREA_HA,
    simplify: float = 0.0,
    resume: bool = True,
    keep_work: bool = False,
    progress: Progress | None = None,
) -> MapResult:
    """Map mining over a whole scene; write ``probability.tif``, ``mines.tif``, ``mines.gpkg``, ``summary.json``.

    Args:
        checkpoint: ``model.pt`` / Lightning ``.ckpt`` (or an ``.onnx`` file); may be None with ``onnx``.
        out_dir: output folder (see docs/run-layout.md).
        stacked: one stacked 13-band raster (GeoTIFF or VRT) or a list of tiles.
        s2: Sentinel-2 raster(s) at 10 and/or 20 m (instead of ``stacked``).
        s1: Sentinel-1 raster(s), VV and VH in dB.
        dem: elevation raster(s) in metres.
        aoi: vector file; only its area is mapped and the outputs cover its bounding box.
        window: window side in pixels (multiple of 32).
        overlap: pixels shared by neighbouring windows (multiple of 32, at most window/2).
        margin: zero-weight pixels at shared window edges (default overlap/4).
        block: approximate side of a unit of work (resume, Dask task) in pixels.
        batch_size: windows per forward pass (default 1 on CPU, 8 on GPU).
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        precision: ``auto`` (bf16 on GPU, fp32 on CPU), ``fp32``, ``bf16`` or ``fp16``.
        onnx: exported model to run with ONNX Runtime instead of PyTorch.
        cluster: Dask scheduler address or ``distributed.Client``.
        workers: start a local Dask cluster of this many worker processes.
        readers: reader threads (default 2 on CPU, 8 on GPU).
        threads: intra-op threads of the backend (default: the library's; per worker: cores/workers).
        scale: per-band factors applied on read, e.g. ``10000`` for a 0-1 Sentinel-2 export.
        band_order: names of the stacked file's bands in order.
        force: map even when the guards find the scene unlike the training data.
        threshold: decision threshold (default: the model card's).
        min_area_ha: mines smaller than this are dropped from ``mines.gpkg`` and ``mines.tif``.
        simplify: polygon simplification tolerance in CRS units (0: pixel outlines).
        resume: reuse finished blocks of an interrupted run with identical settings.
        keep_work: keep ``.work`` (per-block results) after success.
        progress: ``progress(done_km2, total_km2)``.

    Raises:
        SmallminesError: a bad option (ConfigError), a missing band (BandError), a scene unlike the
            training data (SceneMismatchError), an unreadable file.

    """
    start = time.perf_counter()
    out = Path(out_dir)
    if workers is not None and workers < 1:
        raise ConfigError(f"workers={workers}: need at least 1")
    if workers and not cluster and threads is None:
        threads = max(1, (os.cpu_count() or 1) // workers)
    distributed = bool(cluster or workers)
    ref = _model_ref(checkpoint, onnx, device, precision, threads)
    if not distributed:  # resolve and load now, so a bad device or model fails before any work
        ref = ref.resolved()
    card = read_card(ref) if distributed else load_predictor(ref)[1]
    _check_cards(ref, card)
    scene = open_scene(stacked, s2, s1, dem, band_order).with_scale(parse_scale(scale))
    bands = required_bands(card.channels)
    scene.require(bands)
    geometry = load_aoi(aoi, scene.grid.crs) if aoi else None
    rows, cols = aoi_region(scene.grid, geometry) if geometry is not None else \
        (Span(0, scene.grid.height), Span(0, scene.grid.width))
    grid = scene.grid.sub(rows, cols)

    with scene.open() as reader:
        check = compare_to_training(sample_scene(reader, bands, rows, cols), bands, card.stats, scene.file_bands)
    enforce(check, force)
    checked = time.perf_counter()

    if overlap == 0:
        logger.warning("overlap=0: windows are stitched edge to edge, so seams may show where they meet")
    stats = card.stats.subset(card.channels)
    job = Job(scene, make_plan(rows.size, cols.size, window, overlap, margin, block), (rows.start, cols.start),
              bands, card.channels, stats.mean, stats.std, ref, batch_size, readers,
              geometry.wkb if geometry is not None else None)
    out.mkdir(parents=True, exist_ok=True)
    (out / OUTPUTS["summary"]).unlink(missing_ok=True)  # written last: its presence marks a complete map
    work = WorkFolder(out / WORK_DIR, _fingerprint(job))
    reused = work.open(resume)
    todo = [b for b in job.plan.blocks() if b not in reused]
    computed = _infer(job, todo, work, grid, cluster, workers, progress)
    inferred = time.perf_counter()

    threshold = card.threshold if threshold is None else threshold
    summary = _write_outputs(job, work, grid, out, threshold, min_area_ha, simplify)
    if not keep_work:
        shutil.rmtree(work.root, ignore_errors=True)
    done = time.perf_counter()
    summary.update(_describe(job, card, ref, check, cluster, workers, threshold, min_area_ha, simplify, aoi,
                             band_order))
    km2 = summary["areas"]["scene_km2"]
    summary["timing"] = {
        "total_s": done - start, "check_s": checked - start, "inference_s": inferred - checked,
        "outputs_s": done - inferred, "blocks": len(job.plan.blocks()), "blocks_computed": computed,
        "blocks_reused": len(reused), "km2_per_s": km2 / max(done - start, 1e-9),
        "inference_km2_per_s": km2 / max(inferred - checked, 1e-9) if computed else None,
        "inference_mpx_per_s": grid.width * grid.height / 1e6 / max(inferred - checked, 1e-9) if computed else None,
    }
    summary_path = out / OUTPUTS["summary"]
    _write_json(summary_path, summary)
    logger.info("mapped %.1f km2 in %.1f s: %.2f ha of mining in %d polygons", km2, done - start,
                summary["areas"]["mined_ha"], summary["areas"]["polygons"])
    return MapResult(out, out / OUTPUTS["probability"], out / OUTPUTS["mines"], out / OUTPUTS["polygons"],
                     summary_path, summary)


def _infer(job: Job, todo: Sequence[BlockId], work: WorkFolder, grid: Grid, cluster: Any, workers: int | None,
           progress: Progress | None) -> int:
    """Compute the blocks not yet done; returns how many were computed."""
    plan = job.plan
    total_km2 = float(pixel_areas_m2(grid.transform, grid.crs, 0, grid.height).sum()) * grid.width / 1e6
    per_window = total_km2 / plan.n_windows
    done = [plan.n_windows - sum(len(plan.windows(b)) for b in todo)]

    def tick(windows: int = 1) -> None:
        done[0] += windows
        if progress is not None:
            progress(min(done[0] * per_window, total_km2), total_km2)

    tick(0)
    if not todo:
        return 0
    logger.info("%d of %d blocks to compute (%d windows of %dx%d, %s on %s)", len(todo), len(plan.blocks()),
                sum(len(plan.windows(b)) for b in todo), *plan.input_shape, job.model.engine, job.model.device)
    if job.model.engine == "torch" and job.model.device == "cpu":
        logger.info("on CPU, ONNX Runtime maps about 3x faster: `smallmines export MODEL model.onnx`, then --onnx")
    if cluster or workers:
        def on_remote(block: BlockId, acc: np.ndarray) -> None:
            work.save(block, acc)
            tick(len(plan.windows(block)))

        _run_distributed(job, todo, on_remote, cluster, workers)
    else:
        run_blocks(job, todo, work.save, tick)
    return len(todo)


def _write_outputs(job: Job, work: WorkFolder, grid: Grid, out: Path, threshold: float, min_area_ha: float,
                   simplify: float) -> dict[str, Any]:
    prob_tmp, raw_tmp, mines_tmp = (out / WORK_DIR / name for name in ("probability.tif", "raw.tif", "mines.tif"))
    areas = _stitch(job, work, grid, threshold, prob_tmp, raw_tmp)
    polygons = polygonize(raw_tmp)
    area = areas_ha(polygons, grid.crs)
    keep = area >= min_area_ha
    kept = [g for g, k in zip(polygons, keep, strict=True) if k]
    mean_prob = _finalise_mask(job, grid, prob_tmp, kept, mines_tmp, areas)
    write_polygons(out / OUTPUTS["polygons"], kept, {"id": np.arange(1, len(kept) + 1, dtype=np.int64),
                                                    "area_ha": area[keep], "mean_prob": mean_prob}, grid.crs, simplify)
    _to_cog(prob_tmp, out / OUTPUTS["probability"], "average", 3, "mining probability")
    _to_cog(mines_tmp, out / OUTPUTS["mines"], "nearest", 2, "mining (1), not mining (0)")
    scene_km2 = areas.scene_m2 / 1e6
    return {"areas": {
        "scene_km2": scene_km2, "valid_km2": areas.valid_m2 / 1e6,
        "valid_fraction": areas.valid_pixels / max(areas.pixels, 1),
        "mined_ha": areas.mined_m2 / 1e4, "mined_km2": areas.mined_m2 / 1e6,
        "mined_fraction_of_valid": areas.mined_m2 / max(areas.valid_m2, 1e-9),
        "mined_ha_before_min_area": areas.mined_raw_m2 / 1e4, "polygons": len(kept),
        "polygons_dropped": int((~keep).sum()),
    }}


def _describe(job: Job, card: ModelCard, ref: ModelRef, check: SceneCheck, cluster: Any, workers: int | None,
              threshold: float, min_area_ha: float, simplify: float, aoi: Any, band_order: Any) -> dict[str, Any]:
    import smallmines

    plan = job.plan
    return {
        "smallmines": smallmines.__version__, "created": _now(),
        "model": {"file": ref.path, "checkpoint": ref.checkpoint, "onnx": ref.onnx, "architecture": card.model,
                  "channels": list(card.channels), "threshold": card.threshold},
        "backend": {"engine": ref.engine, "device": ref.device, "precision": ref.precision,
                    "cluster": str(cluster) if cluster else None, "workers": workers,
                    "batch_size": job.batch_size or "auto", "readers": job.readers or "auto"},
        "scene": {**job.scene.describe(), "output_grid": job.scene.grid.sub(*job.scene_spans(
            Span(0, plan.height), Span(0, plan.width))).to_dict()},
        "parameters": {"window": plan.size, "overlap": plan.overlap, "margin": plan.margin,
                       "block_windows": plan.per_block, "threshold": threshold, "min_area_ha": min_area_ha,
                       "simplify": simplify, "aoi": str(aoi) if aoi else None,
                       "band_order": band_order if band_order is None or isinstance(band_order, str)
                       else ",".join(band_order)},
        "band_check": check.to_dict(),
        "outputs": dict(OUTPUTS),
    }
