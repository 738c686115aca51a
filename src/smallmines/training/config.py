"""Training configuration: YAML presets and files, plus ``section.key=value`` overrides.

A configuration has five sections (every key optional, defaults below)::

    name: unet-r34-all13
    description: U-Net ResNet34 on all 13 bands (early fusion)
    base: tiny                       # optional: start from a preset or another YAML file
    data:      {root, bands, splits, split_seed, val_fraction, years, splits_dir, cache}
    model:     {name, args, freeze_encoder, frozen_batch_norm, init, stats}
    loss:      {terms, class_weights, focal_gamma, dice_smooth}
    optimizer: {name, lr, weight_decay, momentum, scheduler, warmup_epochs}
    train:     {epochs, max_time, batch_size, eval_batch_size, augment, patience, seed, precision, compile,
                channels_last, deterministic, accelerator, devices, num_nodes, strategy, threshold,
                gradient_clip, accumulate, log_every_n_steps, num_sanity_val_steps}

Presets ship in ``smallmines/training/presets/*.yaml`` (:func:`list_presets`). :func:`load_config` resolves a
preset name or a YAML path (following ``base:``), then applies overrides such as
``["train.epochs=5", "model.args.encoder=resnet18", "loss.terms={ce: 1, dice: 1}"]`` whose values are
parsed as YAML. Dict sections merge key by key (a new ``model.name`` starts from empty ``model.args``);
a loss term weighted 0 is dropped.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import os
import re
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from smallmines.errors import ConfigError

PRECISIONS = ("32-true", "32", "16-mixed", "bf16-mixed", "16-true", "bf16-true", "64-true")
AUGMENTS = ("none", "flips", "dihedral")
CACHES = ("device", "host")
STATS_MODES = ("recompute", "keep")
FROZEN_BATCH_NORM = ("fixed", "train")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
OPTIMIZERS = ("adamw", "adam", "sgd")
SCHEDULERS = ("none", "cosine", "onecycle", "plateau")


@dataclass
class DataConfig:
    """Which data, which channels, which split.

    Attributes:
        root: ``SmallMinesDS.zip``, its folder or a ``.smpack`` pack.
        bands: band selection (:func:`smallmines.bands.parse_bands`), e.g. ``official6``, ``all``, ``s2,ndvi``.
        splits: ``official``, ``random``, ``year``, ``spatial``, ``country:TEST`` or
            ``country:TRAIN>TEST`` (country codes, comma-separated), or a split CSV.
        split_seed: seed of the split and of the validation carve-out (kept fixed across training seeds).
        val_fraction: share of the train split held out for validation (early stopping, threshold).
        years: keep only these years (None: all).
        splits_dir: folder with ``train_test_splits_{YEAR}.csv`` when not beside the data.
        cache: ``device`` keeps the whole split on the accelerator, ``host`` in (pinned) CPU memory.
    """

    root: str | None = None
    bands: str = "all"
    splits: str = "official"
    split_seed: int = 0
    val_fraction: float = 0.1
    years: list[int] | None = None
    splits_dir: str | None = None
    cache: str = "device"


@dataclass
class ModelConfig:
    """Architecture and initialisation.

    Attributes:
        name: a key of :data:`smallmines.models.registry.MODELS`.
        args: architecture arguments (``encoder``, ``encoder_weights`` as a local file, ...).
        freeze_encoder: train only the decoder and head.
        frozen_batch_norm: with ``freeze_encoder``: ``fixed`` keeps the encoder's batch-norm statistics
            (smp's freeze, ours by default) or ``train`` lets them follow the training batches while the
            weights stay frozen (TerraTorch's ``freeze_backbone``, hence the authors' recipe).
        init: checkpoint to start from (fine-tuning / transfer); its architecture and channels win.
        stats: with ``init``: ``keep`` its normalisation statistics or ``recompute`` them on the new train split.
    """

    name: str = "unet"
    args: dict[str, Any] = field(default_factory=lambda: {"encoder": "resnet34"})
    freeze_encoder: bool = False
    frozen_batch_norm: str = "fixed"
    init: str | None = None
    stats: str = "recompute"


@dataclass
class LossConfig:
    """Loss terms and their weights (see :mod:`smallmines.training.losses`).

    Attributes:
        terms: term name -> weight, e.g. ``{ce: 1.0, dice: 1.0}``; names ``ce``, ``bce``, ``dice``, ``focal``.
        class_weights: ``[background, mining]`` weights for CE, BCE and focal (None: equal); for change
            models one per change class, ``[no mining, new, persistent, ceased]``.
        focal_gamma: focusing parameter of the focal loss.
        dice_smooth: additive smoothing of the soft Dice loss.
    """

    terms: dict[str, float] = field(default_factory=lambda: {"ce": 1.0})
    class_weights: list[float] | None = None
    focal_gamma: float = 2.0
    dice_smooth: float = 1.0


@dataclass
class OptimizerConfig:
    """Optimiser and learning-rate schedule.

    Attributes:
        name: ``adamw``, ``adam`` or ``sgd``.
        lr: peak learning rate.
        weight_decay: decoupled (AdamW) or L2 weight decay.
        momentum: SGD momentum.
        scheduler: ``none``, ``cosine`` (per epoch, after warm-up), ``onecycle`` (per step) or
            ``plateau`` (halve on a validation mining-IoU plateau).
        warmup_epochs: linear warm-up epochs for ``cosine``.
    """

    name: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 0.01
    momentum: float = 0.9
    scheduler: str = "none"
    warmup_epochs: int = 0


@dataclass
class TrainConfig:
    """Loop, hardware and reproducibility.

    Attributes:
        epochs: maximum number of epochs (boosting rounds for the LightGBM baseline).
        max_time: wall-clock budget of the training loop (Lightning's ``max_time``), e.g. ``10m``,
            ``1.5h``, ``90s`` or ``DD:HH:MM:SS``; training stops after the step that reaches it, so
            recipes can be compared at equal time (None: no limit).
        batch_size: training batch size per device.
        eval_batch_size: validation/evaluation batch size.
        augment: ``none``, ``flips`` (horizontal/vertical) or ``dihedral`` (flips and 90 degree rotations).
        patience: early-stopping patience in epochs on validation mining IoU (None: off).
        seed: seed of weights, batch order and augmentation.
        precision: Lightning precision. On CPU, ``bf16-mixed`` runs as bf16 autocast where the CPU has
            native bf16 (AVX512-BF16 or AMX) and falls back to ``32-true`` elsewhere; ``16-mixed`` always
            falls back to ``32-true`` on CPU.
        compile: ``torch.compile`` the network on GPU (``true`` or a mode such as ``max-autotune``).
        channels_last: NHWC memory format on GPU (faster convolutions with tensor cores).
        deterministic: deterministic algorithms (``true``, ``false`` or ``warn``).
        accelerator: ``auto``, ``cpu``, ``gpu``...
        devices: devices per node: a count, a list of ids or ``auto`` (all); more than one means DDP.
        num_nodes: number of nodes (DDP).
        strategy: Lightning strategy (``auto``, ``ddp``...).
        threshold: ``val`` (choose the mining-IoU-maximising threshold on validation) or a number.
        gradient_clip: gradient-norm clipping value (None: off).
        accumulate: gradient accumulation steps.
        log_every_n_steps: Lightning logging interval.
        num_sanity_val_steps: validation batches run before training to catch errors early.
    """

    epochs: int = 50
    max_time: str | float | None = None
    batch_size: int = 32
    eval_batch_size: int = 64
    augment: str = "dihedral"
    patience: int | None = 10
    seed: int = 0
    precision: str = "bf16-mixed"
    compile: bool | str = False
    channels_last: bool = True
    deterministic: bool | str = False
    accelerator: str = "auto"
    devices: int | str | list[int] = 1
    num_nodes: int = 1
    strategy: str = "auto"
    threshold: str | float = "val"
    gradient_clip: float | None = None
    accumulate: int = 1
    log_every_n_steps: int = 10
    num_sanity_val_steps: int = 2


@dataclass
class Config:
    """A complete training configuration (see the module docstring for the YAML form)."""

    name: str = "custom"
    description: str = ""
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (the ``config.yaml`` of a run)."""
        return dataclasses.asdict(self)

    def with_absolute_paths(self) -> Config:
        """The same configuration with its local paths made absolute.

        data.root, data.splits_dir, a split CSV and model.init: a run folder's ``config.yaml`` then does
        not depend on the working directory it was trained from.
        """
        copy = Config.from_dict(self.to_dict())

        def absolute(value: str | None, must_exist: bool = False) -> str | None:
            if not value or "://" in value or value.startswith("/vsi"):
                return value
            path = Path(value).expanduser()
            if must_exist and not path.exists():
                return value
            return str(path.resolve())

        copy.data.root = absolute(copy.data.root)
        copy.data.splits_dir = absolute(copy.data.splits_dir)
        copy.data.splits = absolute(copy.data.splits, must_exist=True) if str(copy.data.splits).endswith(".csv") \
            else copy.data.splits
        copy.model.init = absolute(copy.model.init)
        return copy

    def to_yaml(self) -> str:
        """YAML text of :meth:`to_dict`."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def save(self, path: str | Path) -> Path:
        """Write the YAML atomically."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(self.to_yaml(), encoding="utf-8")
        os.replace(tmp, path)
        return path

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Config:
        """Build and validate a configuration from a nested dict.

        Raises:
            ConfigError: an unknown key (the message lists the valid ones) or an invalid value.
        """
        data = dict(data)
        data.pop("base", None)
        sections = {f.name: f for f in dataclasses.fields(cls)}
        _check_keys(data, sections, "configuration")
        kwargs: dict[str, Any] = {}
        for name, value in data.items():
            section_type = _SECTIONS.get(name)
            if section_type is None:
                kwargs[name] = str(value) if value is not None else ""
                continue
            if not isinstance(value, Mapping):
                raise ConfigError(f"section {name!r} must be a mapping, got {value!r}")
            fields = {f.name: f for f in dataclasses.fields(section_type)}
            _check_keys(value, fields, f"section {name!r}")
            values = copy.deepcopy(dict(value))
            kwargs[name] = section_type(**{k: _coerce(v, str(fields[k].type)) for k, v in values.items()})
        config = cls(**kwargs)
        config.validate()
        return config

    def validate(self) -> None:
        """Check values and normalise loss terms.

        Raises:
            ConfigError: naming the key, the value and the valid choices.
        """
        from smallmines.training.losses import LOSS_TERMS

        if isinstance(self.loss.terms, str):  # "ce+dice" is shorthand for {ce: 1, dice: 1}
            self.loss.terms = {term.strip(): 1.0 for term in self.loss.terms.split("+") if term.strip()}
        for section in _SECTIONS:
            _check_types(section, getattr(self, section))
        _check_ranges(self)
        _choice("train.precision", str(self.train.precision), PRECISIONS)
        _choice("train.augment", self.train.augment, AUGMENTS)
        _choice("data.cache", self.data.cache, CACHES)
        _choice("model.stats", self.model.stats, STATS_MODES)
        _choice("model.frozen_batch_norm", self.model.frozen_batch_norm, FROZEN_BATCH_NORM)
        if self.train.max_time is not None:
            self.train.max_time = str(self.train.max_time)
            parse_duration(self.train.max_time, "train.max_time")
        _choice("optimizer.name", self.optimizer.name, OPTIMIZERS)
        _choice("optimizer.scheduler", self.optimizer.scheduler, SCHEDULERS)
        terms = self.loss.terms
        if isinstance(terms, str):
            terms = {t.strip(): 1.0 for t in terms.split("+") if t.strip()}
        if not isinstance(terms, Mapping):
            raise ConfigError(f"loss.terms must map term names to weights, got {terms!r}")
        self.loss.terms = {str(k): float(v) for k, v in terms.items() if float(v) != 0.0}
        for term in self.loss.terms:
            _choice("loss.terms", term, tuple(LOSS_TERMS))
        if not self.loss.terms:
            raise ConfigError("loss.terms is empty; give at least one term, e.g. {ce: 1.0}")
        from smallmines.models.change import is_change_model

        classes = 4 if is_change_model(self.model.name) else 2
        if self.loss.class_weights is not None and len(self.loss.class_weights) != classes:
            names = "no mining, new, persistent, ceased" if classes == 4 else "background, mining"
            raise ConfigError(f"loss.class_weights {self.loss.class_weights} needs {classes} values ({names}) "
                              f"for model {self.model.name!r}")
        for key, value, low in (("train.epochs", self.train.epochs, 1), ("train.batch_size", self.train.batch_size, 1),
                                ("train.eval_batch_size", self.train.eval_batch_size, 1),
                                ("train.accumulate", self.train.accumulate, 1)):
            if int(value) < low:
                raise ConfigError(f"{key}={value}; must be at least {low}")
        if not 0 <= float(self.data.val_fraction) < 1:
            raise ConfigError(f"data.val_fraction={self.data.val_fraction}; must be in [0, 1)")
        if self.train.threshold != "val":
            try:
                value = float(self.train.threshold)
            except (TypeError, ValueError):
                raise ConfigError(f"train.threshold={self.train.threshold!r}; "
                                  "use 'val' or a number in (0, 1)") from None
            if not 0 < value < 1:
                raise ConfigError(f"train.threshold={value}; must be in (0, 1)")
        if not isinstance(self.model.args, Mapping):
            raise ConfigError(f"model.args must be a mapping, got {self.model.args!r}")


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str, key: str = "duration") -> dt.timedelta:
    """``90s``, ``10m``, ``1.5h``, ``2d``, a bare number of minutes, or ``DD:HH:MM:SS`` -> timedelta.

    Raises:
        ConfigError: naming the key and the accepted forms.
    """
    value = str(text).strip().lower()
    try:
        if ":" in value:
            days, hours, minutes, seconds = (float(v) for v in value.split(":"))
            delta = dt.timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
        else:
            match = re.fullmatch(r"(\d+(?:\.\d*)?)\s*([smhd]?)", value)
            if match is None:
                raise ValueError(value)
            delta = dt.timedelta(seconds=float(match[1]) * _UNITS[match[2] or "m"])
    except ValueError:
        raise ConfigError(f"{key}={text!r}; give a duration such as 90s, 10m, 1.5h or DD:HH:MM:SS") from None
    if delta.total_seconds() <= 0:
        raise ConfigError(f"{key}={text!r}; the time budget must be positive")
    return delta


_KINDS = {int: "an integer", float: "a number", bool: "true or false", str: "text", type(None): "null",
          list: "a list", dict: "a mapping"}


def _conforms(value: Any, kind: Any) -> bool:
    """Whether a YAML value fits a field annotation (int is not bool; a float field takes an int)."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        return any(_conforms(value, a) for a in args)
    if kind is Any:
        return True
    if origin in (list, tuple):
        return isinstance(value, (list, tuple)) and all(_conforms(v, args[0]) for v in value) if args else True
    if origin is dict or kind is dict:
        return isinstance(value, Mapping)
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind) if isinstance(kind, type) else True


def _describe(kind: Any) -> str:
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if origin in (list, tuple):
        return f"a list of {_describe(args[0]).replace('an ', '').replace('a ', '')}s" if args else "a list"
    return _KINDS.get(origin or kind, str(kind))


def _check_types(section: str, values: Any) -> None:
    hints = typing.get_type_hints(type(values))
    for f in dataclasses.fields(values):
        value = getattr(values, f.name)
        if not _conforms(value, hints[f.name]):
            example = yaml.safe_dump(getattr(type(values)(), f.name), default_flow_style=True).strip()
            example = example.removesuffix("...").strip()
            raise ConfigError(f"{section}.{f.name}={value!r}: must be {_describe(hints[f.name])}, "
                              f"e.g. {section}.{f.name}={example}")


_RANGES: dict[str, tuple[float | None, float | None, bool]] = {
    # key: (lowest, highest, lowest allowed itself)
    "data.val_fraction": (0.0, 1.0, True), "train.epochs": (1, None, True), "train.batch_size": (1, None, True),
    "train.eval_batch_size": (1, None, True), "train.accumulate": (1, None, True), "train.patience": (1, None, True),
    "train.num_nodes": (1, None, True), "train.log_every_n_steps": (1, None, True),
    "train.num_sanity_val_steps": (0, None, True), "train.gradient_clip": (0.0, None, False),
    "optimizer.lr": (0.0, None, False), "optimizer.weight_decay": (0.0, None, True),
    "optimizer.momentum": (0.0, 1.0, True), "optimizer.warmup_epochs": (0, None, True),
    "loss.focal_gamma": (0.0, None, True), "loss.dice_smooth": (0.0, None, True),
}


def _check_ranges(config: Config) -> None:
    for key, (low, high, inclusive) in _RANGES.items():
        section, name = key.split(".")
        value = getattr(getattr(config, section), name)
        if value is None:
            continue
        too_low = low is not None and (value < low if inclusive else value <= low)
        if too_low or (high is not None and value >= high):
            bound = (f"at least {low}" if inclusive else f"greater than {low}") if low is not None else ""
            bound += f"{' and ' if bound else ''}less than {high}" if high is not None else ""
            raise ConfigError(f"{key}={value!r}: must be {bound}")
    weights = config.loss.class_weights
    if weights is not None and (min(weights) < 0 or sum(weights) <= 0):
        raise ConfigError(f"loss.class_weights={weights}: weights must be at least 0 and not all 0")
    devices = config.train.devices
    if isinstance(devices, str) and devices != "auto" or isinstance(devices, int) and devices < 1 \
            or isinstance(devices, list) and any(d < 0 for d in devices):
        raise ConfigError(f"train.devices={devices!r}: give auto, a count of at least 1 or device ids like [0, 1]")
    if isinstance(config.train.compile, str) and config.train.compile not in COMPILE_MODES:
        raise ConfigError(f"train.compile={config.train.compile!r}: give true, false or a torch.compile mode "
                          f"({', '.join(COMPILE_MODES)})")


_SECTIONS = {"data": DataConfig, "model": ModelConfig, "loss": LossConfig, "optimizer": OptimizerConfig,
             "train": TrainConfig}


def _coerce(value: Any, annotation: str) -> Any:
    """Turn YAML strings such as ``1e-4`` (YAML 1.1 reads it as text) into the annotated number."""
    if isinstance(value, str):
        for kind in (int, float):
            if kind.__name__ in annotation:
                try:
                    return kind(value)
                except ValueError:
                    continue
    if isinstance(value, list) and "list[float]" in annotation:
        return [float(v) for v in value]
    return value


def _check_keys(data: Mapping[str, Any], valid: Mapping[str, Any], where: str) -> None:
    unknown = sorted(set(data) - set(valid) - {"base"})
    if unknown:
        raise ConfigError(f"unknown key(s) {unknown} in {where}; valid keys: {', '.join(valid)}")


def _choice(key: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{key}={value!r}; choose one of {', '.join(choices)}")


def deep_merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Recursive dict merge: mappings merge key by key, anything else replaces."""
    out = copy.deepcopy(dict(base))
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def merge_configs(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """:func:`deep_merge` for configurations: a new ``model.name`` starts from empty ``model.args``."""
    base = copy.deepcopy(dict(base))
    new_model = update.get("model", {}) if isinstance(update.get("model"), Mapping) else {}
    old_model = base.get("model", {}) if isinstance(base.get("model"), Mapping) else {}
    if "name" in new_model and new_model["name"] != old_model.get("name"):
        base["model"] = {k: v for k, v in old_model.items() if k != "args"}
    return deep_merge(base, update)


def _preset_files() -> dict[str, Any]:
    folder = resources.files("smallmines.training") / "presets"
    return {Path(p.name).stem: p for p in folder.iterdir() if p.name.endswith(".yaml")}


def list_presets() -> dict[str, str]:
    """Preset name -> one-line description, sorted by name."""
    out = {}
    for name, path in sorted(_preset_files().items()):
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        out[name] = str(data.get("description", "")).strip()
    return out


def _read_source(source: str | Path, seen: tuple[str, ...] = ()) -> dict[str, Any]:
    """A preset or YAML file as a dict, with its ``base:`` chain merged underneath."""
    key = str(source)
    if key in seen:
        raise ConfigError(f"configuration 'base' chain loops: {' -> '.join((*seen, key))}")
    presets = _preset_files()
    if key in presets:
        text, origin = presets[key].read_text(encoding="utf-8"), f"preset {key!r}"
    elif Path(key).is_file():
        text, origin = Path(key).read_text(encoding="utf-8"), key
    else:
        raise ConfigError(f"{key!r} is neither a preset ({', '.join(sorted(presets))}) nor a YAML file")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{origin}: invalid YAML ({exc})") from exc
    if data is None:  # an empty file would train every default silently
        raise ConfigError(f"{origin} is empty; give a preset, or a YAML file with at least 'base: PRESET'")
    if not isinstance(data, Mapping):
        raise ConfigError(f"{origin}: expected a mapping at the top level, got {type(data).__name__}")
    data = dict(data)
    data.setdefault("name", Path(key).stem)
    base = data.pop("base", None)
    if base:
        data = merge_configs(_read_source(base, (*seen, key)), data)
    return data


def parse_overrides(overrides: Iterable[str] | Mapping[str, Any] | None) -> dict[str, Any]:
    """``["train.epochs=5", "model.args.encoder=resnet18"]`` -> nested dict (values parsed as YAML).

    Raises:
        ConfigError: an item without ``=`` or with an empty key.
    """
    if overrides is None:
        return {}
    if isinstance(overrides, Mapping):
        return copy.deepcopy(dict(overrides))
    out: dict[str, Any] = {}
    for item in overrides:
        key, sep, raw = str(item).partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} must look like section.key=value (e.g. train.epochs=5)")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as exc:
            raise ConfigError(f"override {item!r}: value is not valid YAML ({exc})") from exc
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r} conflicts with an earlier override of {part!r}")
        node[parts[-1]] = value
    return out


def load_config(
    source: str | Path | Mapping[str, Any] | Config = "tiny",
    overrides: Iterable[str] | Mapping[str, Any] | None = None,
) -> Config:
    """Resolve a configuration.

    Args:
        source: a preset name (:func:`list_presets`), a YAML path, a dict or a :class:`Config`.
        overrides: ``section.key=value`` strings or a nested dict, applied last.

    Returns:
        The validated configuration.

    Raises:
        ConfigError: unknown preset/file, invalid YAML, unknown keys or invalid values.

    Example:
        >>> cfg = load_config("tiny", ["data.root=synthetic/", "train.epochs=3"])
    """
    if isinstance(source, Config):
        data = source.to_dict()
    elif isinstance(source, Mapping):
        data = dict(source)
        if data.get("base"):
            data = merge_configs(_read_source(data["base"]), {k: v for k, v in data.items() if k != "base"})
    else:
        data = _read_source(source)
    return Config.from_dict(merge_configs(data, parse_overrides(overrides)))
