"""What a folder holds, for the report: a training run, maps, change folders and a dataset.

They are found by the names in ``docs/run-layout.md``; anything missing becomes a note, never an error.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from smallmines.analysis.maps import map_year
from smallmines.errors import SmallminesError

if TYPE_CHECKING:
    pass

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------
# what a folder holds


@dataclass
class MapFolder:
    """A ``smallmines map`` output folder."""

    path: Path
    year: int | None
    summary: dict[str, Any]
    probability: Path | None
    mines: Path | None
    scene: Path | None
    rgb_bands: tuple[int, int, int] | None = None
    """1-based red, green, blue band indexes of ``scene`` when the summary names them."""


@dataclass
class ChangeFolder:
    """A ``smallmines change`` output folder (two maps, or a dataset tile by tile)."""

    path: Path
    summary: dict[str, Any]
    kind: str
    areas: pd.DataFrame | None = None
    zones: pd.DataFrame | None = None
    tiles: pd.DataFrame | None = None
    zones_frame: Any = None
    """Zones with geometries computed for the report (``--context``); else ``zones.gpkg`` is read."""
    zones_source: str = ""
    """The ``--context`` file the report computed the zones from ("" when they come from the folder)."""

    @property
    def raster(self) -> Path | None:
        """``change.tif`` when the folder compares maps."""
        path = self.path / "change.tif"
        return path if path.is_file() else None


@dataclass
class ReportInputs:
    """Everything :func:`find_inputs` found (None or empty where absent) and notes on what was not."""

    run_dir: Path
    config: dict[str, Any] = field(default_factory=dict)
    data: Path | None = None
    data_origin: str = ""
    train_summary: dict[str, Any] = field(default_factory=dict)
    metrics_csv: Path | None = None
    evaluations: dict[str, dict[str, Any]] = field(default_factory=dict)
    per_patch: dict[str, Path] = field(default_factory=dict)
    model: Path | None = None
    maps: list[MapFolder] = field(default_factory=list)
    changes: list[ChangeFolder] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def is_training_run(self) -> bool:
        """Whether any training or evaluation output was found."""
        return bool(self.config or self.train_summary or self.metrics_csv or self.evaluations or self.model)


def _read_json(path: Path, notes: list[str]) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        notes.append(f"{path} could not be read ({exc}); it is left out.")
        return {}
    return data if isinstance(data, dict) else {}


def _dig(data: Mapping[str, Any], *keys: str) -> Any:
    for key in keys:
        if not isinstance(data, Mapping) or key not in data:
            return None
        data = data[key]
    return data


def _resolve(path_text: str, bases: Sequence[Path]) -> Path | None:
    path = Path(path_text).expanduser()
    if path.is_absolute():
        return path if path.exists() else None
    for base in bases:
        if (base / path).exists():
            return (base / path).resolve()
    return None


def _looks_like_dataset(path: Path) -> bool:
    from smallmines.data.layout import discover

    try:
        discover(path)
    except SmallminesError:
        return False
    return True


def _scene_of(summary: Mapping[str, Any], folder: Path) -> tuple[Path | None, tuple[int, int, int] | None]:
    """The image for the true-colour background, and its RGB band indexes when known.

    Read, in order: ``inputs.stacked`` (the agreed field), ``inputs.scene``, ``scene`` as a path,
    then the ``scene.sources`` list ``smallmines map`` writes (``path`` and ``bands`` names): the
    first source holding red, green and blue.
    """
    from smallmines.bands import RGB_BANDS

    bases = [folder, folder.parent, Path.cwd()]
    for keys in (("inputs", "stacked"), ("inputs", "scene"), ("scene",), ("input",)):
        value = _dig(summary, *keys)
        if isinstance(value, str) and value:
            found = _resolve(value, bases)
            if found is not None and found.is_file():
                return found, None
    sources = _dig(summary, "scene", "sources")
    for source in sources if isinstance(sources, list) else []:
        bands = [str(b).lower() if b else "" for b in source.get("bands") or []]
        if isinstance(source.get("path"), str) and all(b in bands for b in RGB_BANDS):
            found = _resolve(source["path"], bases)
            if found is not None and found.is_file():
                return found, tuple(bands.index(b) + 1 for b in RGB_BANDS)
    return None, None


def _map_folder(path: Path, notes: list[str]) -> MapFolder:
    summary = _read_json(path / "summary.json", notes) if (path / "summary.json").is_file() else {}
    probability = path / "probability.tif"
    mines = path / "mines.tif"
    scene, rgb = _scene_of(summary, path)
    if summary and scene is None:
        notes.append(f"{path}/summary.json names no readable scene (inputs.stacked); the map has no true-colour "
                     "background.")
    year = map_year(path) or (map_year(scene) if scene is not None else None)
    return MapFolder(path, year, summary, probability if probability.is_file() else None,
                     mines if mines.is_file() else None, scene, rgb)


def _read_csv(path: Path) -> pd.DataFrame | None:
    return pd.read_csv(path) if path.is_file() else None


def _change_folder(path: Path, notes: list[str]) -> ChangeFolder:
    summary = _read_json(path / "summary.json", notes) if (path / "summary.json").is_file() else {}
    kind = "dataset" if (path / "tiles.csv").is_file() else "maps"
    return ChangeFolder(path, summary, kind, _read_csv(path / "areas.csv"), _read_csv(path / "zones.csv"),
                        _read_csv(path / "tiles.csv"))


def find_inputs(run_dir: str | Path, data: str | Path | None = None,
                maps: Sequence[str | Path] | None = None) -> ReportInputs:
    """Look into ``run_dir`` for a training run, maps, change folders and a dataset.

    Args:
        run_dir: any folder (a training run, a map folder, a change folder, a dataset, or a folder
            holding ``maps/`` and ``change/``).
        data: the dataset; overrides ``config.yaml`` ``data.root``.
        maps: more map folders (or their ``mines.tif``), besides ``run_dir`` and ``run_dir/maps/*``.

    Returns:
        The inputs found, with notes on what is missing or unreadable.

    Raises:
        SmallminesError: ``run_dir`` does not exist, or a map of ``maps`` is not a map.
    """
    from smallmines.errors import DatasetNotFoundError

    run = Path(run_dir).expanduser()
    if not run.is_dir():
        raise DatasetNotFoundError(f"{run}: no such folder; give a training run, map, change or dataset folder")
    found = ReportInputs(run)
    notes = found.notes
    if (run / "config.yaml").is_file():
        import yaml

        try:
            found.config = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            notes.append(f"{run}/config.yaml is not valid YAML ({exc}).")
    if (run / "train_summary.json").is_file():
        found.train_summary = _read_json(run / "train_summary.json", notes)
    if (run / "logs" / "metrics.csv").is_file():
        found.metrics_csv = run / "logs" / "metrics.csv"
    for metrics in sorted((run / "evaluation").glob("*/metrics.json")):
        split = metrics.parent.name
        found.evaluations[split] = _read_json(metrics, notes)
        if (metrics.parent / "per_patch.csv").is_file():
            found.per_patch[split] = metrics.parent / "per_patch.csv"
    for candidate in (run / "model.pt", run / "checkpoints" / "best.ckpt"):
        if candidate.is_file():
            found.model = candidate
            break

    map_dirs = [run] if (run / "mines.tif").is_file() else []
    map_dirs += sorted(p for p in (run / "maps").glob("*") if (p / "mines.tif").is_file() or
                       (p / "probability.tif").is_file())
    for given in maps or []:
        folder = Path(given).expanduser()
        folder = folder.parent if folder.is_file() else folder
        if not ((folder / "mines.tif").is_file() or (folder / "probability.tif").is_file()):
            raise DatasetNotFoundError(f"--maps {given}: no mines.tif or probability.tif there; give a `smallmines "
                                       "map` folder or its mines.tif")
        if folder.resolve() not in {p.resolve() for p in map_dirs}:
            map_dirs.append(folder)
    found.maps = [_map_folder(p, notes) for p in map_dirs]
    found.maps.sort(key=lambda m: (m.year is None, m.year or 0, str(m.path)))

    change_dirs = [run] if (run / "change.tif").is_file() or (run / "tiles.csv").is_file() else []
    for root in (run / "change", *sorted((run / "change").glob("*"))):
        if (root / "change.tif").is_file() or (root / "tiles.csv").is_file():
            change_dirs.append(root)
    found.changes = [_change_folder(p, notes) for p in change_dirs]

    if data is not None:
        found.data, found.data_origin = Path(data).expanduser(), "--data"
    else:
        root = _dig(found.config, "data", "root")
        if isinstance(root, str) and root:
            found.data = _resolve(root, [Path.cwd(), run, run.parent])
            found.data_origin = "config.yaml data.root"
            if found.data is None:
                notes.append(f"config.yaml names the dataset {root!r}, which is not here; pass --data PATH to "
                             "show the dataset and sample predictions.")
        if found.data is None:
            dataset_change = next((c for c in found.changes if c.kind == "dataset"), None)
            recorded = _dig(dataset_change.summary, "dataset") if dataset_change else None
            if isinstance(recorded, str) and Path(recorded).exists():
                found.data, found.data_origin = Path(recorded), "change/summary.json"
        if found.data is None and not found.is_training_run and not found.maps and not found.changes:
            if _looks_like_dataset(run):
                found.data, found.data_origin = run, "the folder itself"
    return found


