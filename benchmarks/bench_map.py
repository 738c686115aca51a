"""Whole-scene mapping throughput and peak memory (``smallmines map``), appended to BENCHMARKS.md.

Usage::

    python benchmarks/bench_map.py                       # 1k, 4k, 16k scenes; torch and ONNX on CPU; GPU if any
    python benchmarks/bench_map.py --sizes 1024 4096 --backends onnx
    python benchmarks/bench_map.py --levers              # CPU levers on one 2k scene (window, precision, threads)

Each configuration runs in a fresh subprocess, so its peak resident memory (``ru_maxrss``) is its
own. The model is a U-Net with a ResNet-18 encoder (random weights: speed does not depend on
them) over all 13 bands. Scenes larger than the base tile are VRT mosaics of copies of one
2048 x 2048 GeoTIFF (deflate, tiled), so the reads are real reads without writing 14 GB. Results
(with machine, load average and date) are appended under ``## Whole-scene mapping``; other sections
of the file are left alone.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

BASE = 2048
SECTION = "## Whole-scene mapping"
THRESHOLD = 0.75
"""With random weights this marks a few % of the scene as mining, like a real map (0.5 would mark half
of it and time the polygon tracing of noise)."""
LEVELS = np.array([450, 700, 650, 1100, 2000, 2400, 2600, 2700, 1900, 1000, -8, -15, 180], np.float32)
SPREAD = np.array([150, 160, 200, 220, 350, 420, 450, 460, 380, 300, 2.5, 2.5, 40], np.float32)


def _base_tile(path: Path) -> Path:
    """A 2048 x 2048 13-band scene tile with texture at several scales (written block by block)."""
    import rasterio
    from rasterio.transform import from_origin
    from scipy.ndimage import gaussian_filter

    from smallmines.bands import BAND_NAMES

    if path.is_file():
        return path
    rng = np.random.default_rng(0)
    tmp = path.with_name(f".{path.name}.tmp")
    with rasterio.open(tmp, "w", driver="GTiff", width=BASE, height=BASE, count=13, dtype="float32",
                       crs="EPSG:32630", transform=from_origin(600_000, 700_000, 10, 10), nodata=-9999,
                       tiled=True, blockxsize=512, blockysize=512, compress="deflate", predictor=3) as dst:
        for r in range(0, BASE, 512):
            common = gaussian_filter(rng.standard_normal((512, BASE)), 6, mode="wrap").astype(np.float32) * 8
            for i in range(13):
                fine = gaussian_filter(rng.standard_normal((512, BASE)), 1, mode="wrap").astype(np.float32) * 2
                band = LEVELS[i] + SPREAD[i] * (0.7 * common + 0.7 * fine)
                dst.write(band, i + 1, window=rasterio.windows.Window(0, r, BASE, 512))
        dst.descriptions = BAND_NAMES
    os.replace(tmp, path)
    return path


def _mosaic(tile: Path, size: int, folder: Path) -> Path:
    """A VRT of ``(size / 2048)^2`` copies of the base tile, or the tile itself (or a crop of it)."""
    import rasterio

    from smallmines.bands import BAND_NAMES

    path = folder / f"scene_{size}.vrt"
    n = max(1, size // BASE)
    side = min(size, BASE) if n == 1 else size
    with rasterio.open(tile) as src:
        t = src.transform
    bands = []
    k = min(side, BASE)
    for b, name in enumerate(BAND_NAMES, start=1):
        sources = "".join(
            f"<SimpleSource><SourceFilename relativeToVRT=\"0\">{tile}</SourceFilename><SourceBand>{b}</SourceBand>"
            f"<SrcRect xOff=\"0\" yOff=\"0\" xSize=\"{k}\" ySize=\"{k}\"/>"
            f"<DstRect xOff=\"{j * BASE}\" yOff=\"{i * BASE}\" xSize=\"{k}\" ySize=\"{k}\"/>"
            "</SimpleSource>" for i in range(n) for j in range(n))
        bands.append(f"<VRTRasterBand dataType=\"Float32\" band=\"{b}\"><Description>{name}</Description>"
                     f"<NoDataValue>-9999</NoDataValue>{sources}</VRTRasterBand>")
    from rasterio.crs import CRS

    path.write_text(f"<VRTDataset rasterXSize=\"{side}\" rasterYSize=\"{side}\"><SRS>{CRS.from_epsg(32630).to_wkt()}"
                    f"</SRS><GeoTransform>{t.c}, {t.a}, 0, {t.f}, 0, {t.e}</GeoTransform>{''.join(bands)}</VRTDataset>")
    return path


def _models(folder: Path, tile: Path, encoder: str = "resnet18", onnx_too: bool = True) -> tuple[Path, Path]:
    """U-Net with ``encoder`` over 13 bands (stats of the tile) as model.pt and model.onnx."""
    import torch

    from smallmines.bands import BAND_NAMES
    from smallmines.data.stats import BandStats
    from smallmines.models.export import export_onnx
    from smallmines.models.registry import ModelCard, build_model, save_model

    pt, onnx = folder / f"model-{encoder}.pt", folder / f"model-{encoder}.onnx"
    if not pt.is_file():
        torch.manual_seed(0)
        network = build_model("unet", BAND_NAMES, encoder=encoder)
        stats = BandStats(BAND_NAMES, tuple(map(float, LEVELS)), tuple(map(float, SPREAD * 0.99)))
        save_model(pt, network, ModelCard("unet", {"encoder": encoder}, BAND_NAMES, stats, 0.5))
    if onnx_too and not onnx.is_file():
        export_onnx(pt, onnx, check=False)
    return pt, onnx


def run_one(config: dict) -> dict:
    """Map one scene in this process; returns throughput and peak memory."""
    from smallmines.mapping.mapper import map_scene

    kwargs = {k: config[k] for k in ("window", "overlap", "batch_size", "device", "precision", "threads", "readers")
              if config.get(k) is not None}
    model = {"onnx": config["onnx"]} if config["backend"] == "onnx" else {}
    start = time.perf_counter()
    result = map_scene(None if model else config["checkpoint"], config["out"], stacked=config["scene"],
                       resume=False, min_area_ha=0.1, threshold=THRESHOLD, **model, **kwargs)
    seconds = time.perf_counter() - start
    timing, areas = result.summary["timing"], result.summary["areas"]
    peak_gpu = None
    if config.get("device", "").startswith("cuda"):
        import torch

        peak_gpu = torch.cuda.max_memory_reserved() / 2**20  # what the process holds, caching included
    return {**{k: v for k, v in config.items() if k not in ("checkpoint", "onnx", "scene", "out")},
            "km2": areas["scene_km2"], "seconds": seconds, "inference_s": timing["inference_s"],
            "check_s": timing["check_s"], "outputs_s": timing["outputs_s"],
            "mined_fraction": areas["mined_fraction_of_valid"],
            "km2_per_s": areas["scene_km2"] / seconds, "inference_km2_per_s": timing["inference_km2_per_s"],
            "mpx_per_s": areas["scene_km2"] / 1e-4 / 1e6 / seconds,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "peak_gpu_mib": peak_gpu,
            "load_avg": os.getloadavg()[0], "precision_used": result.summary["backend"]["precision"],
            "encoder": config.get("encoder", "resnet18"), "gdal_cachemax": os.environ.get("GDAL_CACHEMAX")}


def _spawn(config: dict) -> dict:
    env = {**os.environ, "GDAL_CACHEMAX": os.environ.get("GDAL_CACHEMAX", "512")}  # as `smallmines map` does
    out = subprocess.run([sys.executable, __file__, "--run", json.dumps(config)], capture_output=True, text=True,
                         env=env)
    if out.returncode:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def _machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    import onnxruntime
    import torch

    gpu = f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    return (f"{platform.node()}: {cpu}, {os.cpu_count()} cores visible{gpu}; torch {torch.__version__}, "
            f"onnxruntime {onnxruntime.__version__}, Python {platform.python_version()}")


def _table(rows: list[dict]) -> str:
    head = ("| scene px | km2 | backend | device | precision | window | batch | threads | s | km2/s | Mpx/s "
            "| inference km2/s | peak RSS MiB | peak GPU MiB | load avg |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        gpu = "-" if r["peak_gpu_mib"] is None else f"{r['peak_gpu_mib']:.0f}"
        lines.append(f"| {r['size']} | {r['km2']:.0f} | {r['backend']} | {r.get('device', 'cpu')} | "
                     f"{r['precision_used']} | {r.get('window', 1024)} | {r.get('batch_size') or 'auto'} | "
                     f"{r.get('threads') or 'auto'} | {r['seconds']:.1f} | {r['km2_per_s']:.2f} | "
                     f"{r['mpx_per_s']:.3f} | "
                     f"{(r['inference_km2_per_s'] or 0):.2f} | {r['peak_rss_mib']:.0f} | "
                     f"{gpu} | {r['load_avg']:.1f} |")
    return "\n".join(lines)


def _append(path: Path, title: str, rows: list[dict], notes: str) -> None:
    text = path.read_text() if path.is_file() else "# Benchmarks\n"
    block = f"\n### {title}\n\n{_machine()}\n\n{_table(rows)}\n\n{notes}\n"
    if SECTION not in text:
        text = text.rstrip("\n") + f"\n\n{SECTION}\n\nProduced by `benchmarks/bench_map.py`; newest runs last.\n"
    start = text.index(SECTION)
    following = text.find("\n## ", start + len(SECTION))
    end = len(text) if following < 0 else following
    text = text[:end].rstrip("\n") + "\n" + block + text[end:]
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 4096, 16384])
    parser.add_argument("--backends", nargs="+", default=["torch", "onnx"], choices=["torch", "onnx"])
    parser.add_argument("--levers", action="store_true", help="compare CPU settings on one 2048 px scene")
    parser.add_argument("--devices", nargs="+", choices=["cpu", "cuda"], help="default: cpu, and cuda if present")
    parser.add_argument("--encoder", default="resnet18", help="U-Net encoder of the random-weight model")
    parser.add_argument("--gpu-window", type=int, default=2048)
    parser.add_argument("--gpu-batch", type=int, default=4)
    parser.add_argument("--readers", type=int, help="reader threads (default: map's)")
    parser.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/smallmines-bench-map"))
    parser.add_argument("--output", type=Path, default=Path(__file__).resolve().parents[1] / "BENCHMARKS.md")
    parser.add_argument("--no-write", action="store_true", help="print the table, do not touch BENCHMARKS.md")
    parser.add_argument("--run", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        print(json.dumps(run_one(json.loads(args.run))))
        return
    import torch

    import smallmines  # noqa: F401  (torchvision shim before anything imports smp)

    args.workdir.mkdir(parents=True, exist_ok=True)
    tile = _base_tile(args.workdir / "tile.tif")
    checkpoint, onnx = _models(args.workdir, tile, args.encoder, onnx_too="onnx" in args.backends or args.levers)
    base = {"checkpoint": str(checkpoint), "onnx": str(onnx)}
    configs = []
    if args.levers:
        scene = str(_mosaic(tile, 2048, args.workdir))
        for backend, window, precision, threads in (("torch", 512, "fp32", None), ("torch", 1024, "fp32", None),
                                                    ("torch", 2048, "fp32", None), ("torch", 1024, "bf16", None),
                                                    ("onnx", 512, None, None), ("onnx", 1024, None, None),
                                                    ("onnx", 2048, None, None), ("onnx", 1024, None, 1)):
            configs.append({**base, "size": 2048, "scene": scene, "backend": backend, "device": "cpu",
                            "window": window, "precision": precision, "threads": threads})
    else:
        devices = args.devices or ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
        for size in args.sizes:
            scene = str(_mosaic(tile, size, args.workdir))
            for device in devices:
                for backend in args.backends if device == "cpu" else ["torch"]:
                    configs.append({**base, "size": size, "scene": scene, "backend": backend, "device": device,
                                    "window": args.gpu_window if device == "cuda" else 1024,
                                    "batch_size": args.gpu_batch if device == "cuda" else None,
                                    "readers": args.readers, "encoder": args.encoder})
    rows = []
    for config in configs:
        config["out"] = str(args.workdir / f"out_{config['backend']}_{config['device']}_{config['size']}")
        try:
            row = _spawn(config)
        except RuntimeError as error:  # one failed configuration does not cost the others
            print(f"{config['size']} px {config['backend']} {config['device']} FAILED:\n{error}", flush=True)
            continue
        rows.append(row)
        print(f"{row['size']:>6} px {row['backend']:>5} {row['device']:>4} w{row.get('window')} "
              f"{row['precision_used']}: {row['km2_per_s']:.2f} km2/s, {row['mpx_per_s']:.3f} Mpx/s, "
              f"(inference {row['inference_km2_per_s']:.2f} km2/s; setup+guards {row['check_s']:.1f} s, outputs "
              f"{row['outputs_s']:.1f} s), peak {row['peak_rss_mib']:.0f} MiB (load {row['load_avg']:.1f})", flush=True)
    title = f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {'CPU levers' if args.levers else 'scene sizes'}"
    notes = ("km2/s and Mpx/s are end to end (guards, inference, COG/GeoPackage writing); 'inference km2/s' "
             "excludes the guards and the outputs. Peak RSS is the whole process (model, reader threads, "
             "GDAL cache). Load average > cores means other jobs shared the CPU during the run.")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    if args.no_write:
        print(_table(rows))
    else:
        _append(args.output, title, rows, notes)
        print(f"appended to {args.output}")


if __name__ == "__main__":
    main()
