"""The report in a real browser: headless Chromium renders the Leaflet map, its layers and a screenshot.

Chromium is Debian's ``chromium`` package. When it is missing, the session fixture installs it with
apt-get (as root, or through passwordless sudo); the tests are skipped, with the reason, only when
that is impossible.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import rasterio
from PIL import Image
from rasterio.transform import from_origin

from smallmines.analysis.change import compare_maps
from smallmines.report.build import build_report
from smallmines.report.figures import CHANGE_COLOURS, hex_to_rgba

CRS = "EPSG:32630"
X0, Y0 = 620_000.0, 720_000.0
SIZE = 160

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
         "--disable-dev-shm-usage"]


def _find_browser() -> str | None:
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


def _install_chromium() -> str:
    """Install Debian's chromium; returns why it could not be installed, or '' on success."""
    if shutil.which("apt-get") is None:
        return "apt-get is not available on this system"
    prefix: list[str] = []
    if os.geteuid() != 0:
        if shutil.which("sudo") is None or subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode:
            return "not root and no passwordless sudo to run apt-get"
        prefix = ["sudo", "-n"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
        try:
            done = subprocess.run(prefix + command, capture_output=True, text=True, env=env, timeout=900)
        except subprocess.TimeoutExpired:
            return f"{' '.join(command)} timed out"
        if done.returncode:
            return f"{' '.join(command)} failed: {done.stderr.strip()[-300:]}"
    return ""


@pytest.fixture(scope="session")
def chromium() -> str:
    browser = _find_browser()
    if browser is None:
        problem = _install_chromium()
        browser = _find_browser()
        if browser is None:
            pytest.skip(f"headless Chromium is not installed and could not be installed: {problem or 'not found'}")
    return browser


def run_browser(browser: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    profile.mkdir(parents=True, exist_ok=True)
    return subprocess.run([browser, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True, text=True,
                          timeout=120)


def _write(path: Path, data: np.ndarray, nodata: float) -> Path:
    data = data if data.ndim == 3 else data[None]
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", driver="GTiff", height=data.shape[1], width=data.shape[2], count=data.shape[0],
                       dtype=data.dtype.name, crs=CRS, transform=from_origin(X0, Y0, 10, 10), nodata=nodata) as dst:
        dst.write(data)
    return path


def write_map_and_scene(root: Path, year: int, mining: np.ndarray) -> None:
    """A 13-band scene (forest green, mined ground brown, a nodata corner) and a map folder naming it."""
    forest = np.array([300, 600, 350, 900, 2200, 2600, 2800, 2900, 1500, 700, -8, -14, 100], np.float32)
    soil = np.array([900, 1100, 1400, 1600, 1800, 1900, 2000, 2100, 2600, 2300, -6, -12, 100], np.float32)
    image = np.where(mining[None] == 1, soil[:, None, None], forest[:, None, None]).astype(np.float32)
    image[:, :12, :30] = -9999
    scene = _write(root / f"scene_{year}.tif", image, -9999)
    folder = root / "run" / "maps" / str(year)
    mines = np.where(image[0] == -9999, 255, mining).astype(np.uint8)
    _write(folder / "mines.tif", mines, 255)
    _write(folder / "probability.tif", np.where(mines == 255, -1, 0.05 + 0.9 * mining).astype(np.float32), -1)
    (folder / "summary.json").write_text(json.dumps({"year": year, "inputs": {"stacked": str(scene)}}))


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Maps of two years over true-colour scenes, their change with zones: the report's map at its fullest."""
    import geopandas as gpd
    from shapely.geometry import box

    root = tmp_path_factory.mktemp("browser")
    run = root / "run"
    yy, xx = np.mgrid[:SIZE, :SIZE]
    before = ((yy - 50) ** 2 + (xx - 50) ** 2 < 15**2).astype(np.uint8)
    after = (before | ((yy - 110) ** 2 + (xx - 100) ** 2 < 20**2)).astype(np.uint8)
    for year, mining in ((2016, before), (2022, after)):
        write_map_and_scene(root, year, mining)
    zones = gpd.GeoDataFrame({"NAME": ["north"]}, geometry=[box(X0, Y0 - 800, X0 + 1600, Y0)], crs=CRS)
    compare_maps(run / "maps" / "2016", run / "maps" / "2022", run / "change", zones=zones, zone_field="NAME",
                 figures=False)
    return build_report(run, root / "report.html", max_overlay_px=400)


def test_map_renders_its_layers(chromium, report, tmp_path):
    done = run_browser(chromium, tmp_path / "profile", "--virtual-time-budget=8000", "--dump-dom",
                       report.as_uri())
    dom = done.stdout
    assert done.returncode == 0 and "<html" in dom, done.stderr[-2000:]
    assert re.search(r'<div id="map"[^>]*data-ready="true"', dom), "the map script did not run to the end"
    assert re.search(r'<div id="map"[^>]*class="[^"]*leaflet-container', dom)
    assert re.search(r'<div class="[^"]*leaflet-control-layers', dom) and '<div class="sm-legend' in dom
    overlays = re.findall(r'<img[^>]*class="[^"]*leaflet-image-layer[^"]*"[^>]*>', dom)
    assert len(overlays) == 2  # the visible ones: true colour 2022 (background) and the change
    for tag in overlays:
        width = re.search(r"width:\s*([\d.]+)px", tag)
        assert width and float(width.group(1)) > 100, tag  # laid out at a visible size
    selectors = re.findall(r'<input type="(radio|checkbox)" class="leaflet-control-layers-selector"[^>]*>'
                           r'<span>(.*?)</span></span>', dom)
    labels = {kind: [re.sub(r"<[^>]+>", "", text).strip() for k, text in selectors if k == kind]
              for kind in ("radio", "checkbox")}
    assert labels["radio"] == ["True colour 2016", "True colour 2022"]
    assert labels["checkbox"] == ["Mining probability 2016", "Mines 2016", "Mining probability 2022", "Mines 2022",
                                  "Change 2016\u20132022", "Countries (Natural Earth)", "Zones"]
    assert re.search(r'<path[^>]*class="leaflet-interactive"', dom), "the zone outline is not drawn"
    assert "Countries: Natural Earth (public domain)" in dom  # the embedded outlines are credited


def test_screenshot_shows_the_map(chromium, report, tmp_path):
    shot = tmp_path / "report.png"
    done = run_browser(chromium, tmp_path / "profile", "--window-size=1280,1000", "--virtual-time-budget=8000",
                       f"--screenshot={shot}", report.as_uri())
    assert done.returncode == 0 and shot.is_file(), done.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert pixels.shape[:2] == (1000, 1280)
    assert pixels.std() > 20 and len(np.unique(pixels.reshape(-1, 3), axis=0)) > 200, "the page looks blank"
    # the first screen is the header, the headline numbers and the map: find the map's layers in it
    new = np.array(hex_to_rgba(CHANGE_COLOURS[1])[:3])
    red = (np.abs(pixels - new).sum(axis=2) < 40).sum()
    forest = ((pixels[..., 1] > pixels[..., 0] + 15) & (pixels[..., 1] > pixels[..., 2] + 15)).sum()
    assert red > 3000, f"only {red} pixels of new mining on the first screen"
    assert forest > 20000, f"only {forest} green pixels: the true-colour background is missing"


def test_report_needs_no_network(report):
    """Every resource is inline; nothing in the page points a loader at another host."""
    text = report.read_text(encoding="utf-8")
    payload = json.loads(re.search(r'id="map-data">(.*?)</script>', text, re.S).group(1))
    assert all(layer["url"].startswith("data:image/png;base64,") for layer in payload["layers"])
    assert not re.search(r"""\bsrc\s*=\s*["']?(https?:)?//""", text)
    assert not re.search(r"<link[^>]*href", text) and not re.search(r"<script[^>]*\bsrc", text)
