"""The one config object every run is built from, and its validation.

Papermill and YAML hand us loosely typed values; a typo there would otherwise be a silent
no-op. ``Config.from_dict`` rejects unknown keys, wrong types and impossible values with a
message that names the key and what is allowed.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import typing
from dataclasses import dataclass

import yaml


class ConfigError(ValueError):
    """A parameter is unknown, of the wrong type, or out of range.

    ``key`` is the offending parameter (None when the error is not about one key), so callers
    such as the preset loader point at its line without parsing the message.
    """

    def __init__(self, message: str, key: str | None = None):
        super().__init__(message)
        self.key = key


SCHEDULES = ("constant", "cosine")
DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
NORMALIZE = ("train", "published", "none")
INITS = ("torchvision", "pytorch")


@dataclass(frozen=True)
class Config:
    # optimisation
    lr: float = 0.05                # initial (peak) learning rate, > 0
    momentum: float = 0.9           # SGD momentum (the report does not state it; 0.9 is usual)
    nesterov: bool = False          # Nesterov momentum
    weight_decay: float = 0.0       # L2 penalty through SGD's weight_decay
    batch_size: int = 128           # training batch size
    epochs: int = 15                # number of epochs, >= 1
    schedule: str = "constant"      # constant | cosine (per-epoch cosine annealing)
    eta_min: float = 0.0            # cosine floor
    # data and augmentation
    mixup_alpha: float = 0.0        # lambda ~ Beta(alpha, alpha); 0 = off
    augment_crop: bool = True       # random crop 32 from a 4-pixel zero pad
    augment_flip: bool = True       # horizontal flip with p = 0.5
    normalize: str = "train"        # train (stats of the 40k split) | published (the report's printed constants) | none
    n_train: typing.Optional[int] = None  # stratified subset of the 40k train split; None = all
    n_val: typing.Optional[int] = None    # stratified subset of the 10k val split; None = all
    subset_seed: int = 0            # seed of the stratified subset draw
    split_seed: int = 0             # seed of the 40k/10k split (the report's Listing 1 uses 0)
    # model
    width: float = 1.0              # MobileNet width multiplier
    init: str = "pytorch"           # pytorch (layer defaults, as the report's lineage) | torchvision (kaiming fan_out re-init)
    # reproducibility and hardware
    seed: int = 0                   # weights init, shuffling, augmentation, mixup
    device: str = "auto"            # auto -> cuda, mps, cpu
    precision: str = "auto"         # auto -> bf16 autocast on CUDA, fp32 elsewhere
    channels_last: bool = True      # NHWC memory format (faster on CPU and tensor cores)
    compile: str = "auto"           # auto -> torch.compile on CUDA only; "on" | "off"
    eval_batch_size: int = 0        # 0 = the fastest measured for the device
    eval_every: int = 1             # score the validation split every k epochs (and always the last)
    data_root: typing.Optional[str] = None  # CIFAR-100 folder; None = $HPSTUDY_DATA or ./data

    @classmethod
    def keys(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, d: typing.Mapping[str, typing.Any] | None = None, **kw) -> "Config":
        values = dict(d or {}, **kw)
        allowed = cls.keys()
        for key in values:
            if key not in allowed:
                raise ConfigError(unknown_key_message(key, allowed), key)
        hints = typing.get_type_hints(cls)
        out = {}
        for key, value in values.items():
            out[key] = coerce(key, value, hints[key])
        cfg = cls(**out)
        cfg.check()
        return cfg

    def check(self) -> None:
        def bad(key, why):
            raise ConfigError(f"parameter {key!r}: {why} (got {getattr(self, key)!r})", key)

        if not self.lr > 0:
            bad("lr", "must be > 0")
        if not 0 <= self.momentum < 1:
            bad("momentum", "must be in [0, 1)")
        if self.nesterov and self.momentum == 0:
            bad("nesterov", "needs momentum > 0")
        if self.weight_decay < 0:
            bad("weight_decay", "must be >= 0")
        if self.batch_size < 1:
            bad("batch_size", "must be >= 1")
        if self.epochs < 1:
            bad("epochs", "must be >= 1")
        if self.eta_min < 0 or self.eta_min > self.lr:
            bad("eta_min", "must be in [0, lr]")
        if self.mixup_alpha < 0:
            bad("mixup_alpha", "must be >= 0 (0 = off)")
        if not self.width > 0:
            bad("width", "must be > 0")
        for key in ("n_train", "n_val"):
            v = getattr(self, key)
            if v is not None and v < 100:
                bad(key, "must be >= 100 (one image per class) or None for the whole split")
        if self.eval_every < 1:
            bad("eval_every", "must be >= 1 (1 = every epoch; the last epoch is always scored)")
        if self.eval_batch_size < 0:
            bad("eval_batch_size", "must be >= 0 (0 = automatic)")
        for key, choices in (("schedule", SCHEDULES), ("device", DEVICES),
                             ("precision", PRECISIONS), ("normalize", NORMALIZE),
                             ("init", INITS),
                             ("compile", ("auto", "on", "off"))):
            if getattr(self, key) not in choices:
                bad(key, "allowed values: " + ", ".join(choices))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def replace(self, **kw) -> "Config":
        return Config.from_dict({**self.to_dict(), **kw})


# --- a config in a few words --------------------------------------------------------------

# what every description names, default or not: what a reader looks for first
ALWAYS_DESCRIBED = ("lr", "epochs")


def non_defaults(cfg: "Config | typing.Mapping[str, typing.Any]", *,
                 always: typing.Iterable[str] = ALWAYS_DESCRIBED,
                 skip: typing.Iterable[str] = ()) -> dict:
    """The fields of ``cfg`` (a Config or its ``to_dict()``) whose value differs from
    ``Config``'s default, and the ``always`` fields whatever their value, in field order;
    ``skip`` leaves fields out (it wins over ``always``)."""
    d = cfg.to_dict() if isinstance(cfg, Config) else dict(cfg)
    default = Config().to_dict()
    always, skip = set(always), set(skip)
    return {k: v for k, v in d.items()
            if k not in skip and (k in always or v != default[k])}


def describe(cfg: "Config | typing.Mapping[str, typing.Any]", *,
             always: typing.Iterable[str] = ALWAYS_DESCRIBED, skip: typing.Iterable[str] = (),
             sep: str = ", ", float_format: str = "") -> str:
    """``lr=0.05, epochs=15, width=0.25``: ``non_defaults(cfg, always=, skip=)`` as
    ``key=value`` joined by ``sep``; floats formatted with ``float_format`` (``""``: as
    ``str``, ``"g"``: ``1`` for ``1.0``), everything else as ``str``."""
    return sep.join(f"{k}={format(v, float_format)}" if isinstance(v, float) else f"{k}={v}"
                    for k, v in non_defaults(cfg, always=always, skip=skip).items())


# Common names for our keys that spelling similarity alone would not find.
ALIASES = {"learning_rate": "lr", "wd": "weight_decay", "bs": "batch_size",
           "num_epochs": "epochs", "n_epochs": "epochs", "alpha": "mixup_alpha",
           "mixup": "mixup_alpha", "width_mult": "width", "width_multiplier": "width"}


def unknown_key_message(key: str, allowed: typing.Sequence[str]) -> str:
    alias = ALIASES.get(key.lower())
    close = [alias] if alias in allowed else difflib.get_close_matches(key, allowed, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return f"unknown parameter {key!r}.{hint} Allowed: {', '.join(allowed)}"


def coerce(key: str, value, hint):
    """Check ``value`` against a type hint; ints are accepted where floats are expected."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Union and type(None) in args:
        if value is None:
            return None
        inner = [a for a in args if a is not type(None)][0]
        return coerce(key, value, inner)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)) or not value:
            raise ConfigError(f"parameter {key!r}: expected a non-empty list of "
                              f"{args[0].__name__}, got {value!r} ({type(value).__name__})", key)
        return [coerce(key, v, args[0]) for v in value]
    ok = {
        bool: lambda v: isinstance(v, bool),
        int: lambda v: isinstance(v, int) and not isinstance(v, bool),
        float: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        str: lambda v: isinstance(v, str),
    }[hint]
    if not ok(value):
        hint_text = ""
        if hint is float and isinstance(value, str):
            try:
                float(value)
                hint_text = "; YAML 1.1 reads a number like 5e-4 as text: write 5.0e-4"
            except ValueError:
                pass
        raise ConfigError(f"parameter {key!r}: expected {hint.__name__}, got {value!r} "
                          f"({type(value).__name__}){hint_text}", key)
    if hint is float and isinstance(value, float) and not math.isfinite(value):
        # nan passes no comparison and inf passes "> 0": both would train garbage
        raise ConfigError(f"parameter {key!r}: must be a finite number, got {value!r}", key)
    return float(value) if hint is float else value


def read_text(text: str, hint=None):
    """A value typed on a command line, read by the type it is for.

    YAML alone misreads two common forms: ``1e-4`` (YAML 1.1 has no float without a dot, so it
    is text) and ``on``/``off`` (booleans in YAML 1.1). A float takes any number Python reads;
    a text field keeps the text as written; ``null``/``None``/``~``/empty is None where None is
    allowed. Anything else is YAML, and ``coerce`` later rejects what does not fit, by name.
    """
    optional = False
    if typing.get_origin(hint) is typing.Union:
        optional = type(None) in typing.get_args(hint)
        hint = [a for a in typing.get_args(hint) if a is not type(None)][0]
    if text == "" or (optional and text in ("null", "None", "~")):
        return None
    if hint is str:
        return text
    value = yaml.safe_load(text)
    if hint is float and isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    return value
