"""CIFAR-100 in memory: loading with validation, the report's split, statistics, augmentation,
and the images a run trains and validates on (``prepare_data``).

Every split is one uint8 tensor (N, 3, 32, 32) plus label tensors, so training never touches
PIL or runs Python per sample: augmentation and mixup work on whole batches on the device.
"""
from __future__ import annotations

import functools
import hashlib
import io
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .config import Config, ConfigError

ARCHIVE_URL = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
ARCHIVE_MD5 = "eb9058c3a382ffc7106e4002c42a8d85"
OFFICIAL_MD5 = {
    "train": "16019d7e3df5f24257cddd939b257f8d",
    "test": "f0ef6b0ae62326f3e7ffdfab6717acfc",
    "meta": "7973b15100ade9c7d40fb424638fde48",
}
FOLDER = "cifar-100-python"
NUM_CLASSES, NUM_COARSE = 100, 20
# The statistics the report printed (they come from augmented, zero-padded crops; see
# ``augmented_stats``): ``normalize="published"``.
PUBLISHED_MEAN = (0.4385, 0.4181, 0.3775)
PUBLISHED_STD = (0.3004, 0.2872, 0.2937)


class DataError(RuntimeError):
    """The data set is missing, malformed or inconsistent; the message names the file."""


@dataclass
class Split:
    x: torch.Tensor        # (N, 3, 32, 32) uint8
    fine: torch.Tensor     # (N,) int64, 0..99
    coarse: torch.Tensor   # (N,) int64, 0..19

    def __len__(self):
        return len(self.fine)

    def subset(self, idx: torch.Tensor) -> "Split":
        return Split(self.x[idx], self.fine[idx], self.coarse[idx])

    def to(self, device) -> "Split":
        return Split(self.x.to(device), self.fine.to(device), self.coarse.to(device))


@dataclass
class CIFAR100:
    train: Split           # the official 50,000 training images (train + validation)
    test: Split            # the official 10,000 test images
    fine_names: list
    coarse_names: list
    root: str
    md5: dict = field(default_factory=dict)   # file -> md5 of the bytes read

    @property
    def official(self) -> bool:
        """True when every file is byte-identical to the official release."""
        return all(self.md5.get(k) == v for k, v in OFFICIAL_MD5.items())

    @property
    def identity(self) -> str:
        """A short id of the exact bytes used; part of every run's hash."""
        h = hashlib.sha256()
        for k in sorted(self.md5):
            h.update(f"{k}:{self.md5[k]};".encode())
        return h.hexdigest()[:16]

    def describe(self) -> dict:
        return {
            "root": self.root,
            "md5": dict(self.md5),
            "official_md5": dict(OFFICIAL_MD5),
            "official": self.official,
            "matches": {k: self.md5.get(k) == v for k, v in OFFICIAL_MD5.items()},
            "n_train": len(self.train),
            "n_test": len(self.test),
        }


class _SafeUnpickler(pickle.Unpickler):
    """Allows only what a CIFAR pickle needs (numpy arrays), so a data file cannot run code."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("_codecs", "encode"),
    }

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _read_pickle(path: Path) -> tuple[dict, str]:
    raw = path.read_bytes()
    try:
        obj = _SafeUnpickler(io.BytesIO(raw), encoding="latin1").load()
    except Exception as e:  # truncated, corrupt, or not a pickle at all
        raise DataError(f"{path}: cannot be read as a CIFAR-100 pickle "
                        f"({type(e).__name__}: {e}); the file is corrupt or truncated "
                        f"({len(raw):,} bytes). Replace it with the official file.") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected a dict, found {type(obj).__name__}")
    return obj, hashlib.md5(raw).hexdigest()


def _split_from(path: Path, d: dict, n_expected: int | None) -> Split:
    for key in ("data", "fine_labels", "coarse_labels"):
        if key not in d:
            raise DataError(f"{path}: missing key {key!r} (found {sorted(d)})")
    data = d["data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
            or data.shape[1] != 3072:
        shape = getattr(data, "shape", None)
        dtype = getattr(data, "dtype", type(data).__name__)
        raise DataError(f"{path}: 'data' must be a uint8 array of shape (N, 3072), "
                        f"found {dtype} {shape}")
    n = data.shape[0]
    if n_expected is not None and n != n_expected:
        raise DataError(f"{path}: expected {n_expected:,} images, found {n:,} (truncated?)")
    fine = np.asarray(d["fine_labels"])
    coarse = np.asarray(d["coarse_labels"])
    for name, lab, k in (("fine_labels", fine, NUM_CLASSES), ("coarse_labels", coarse, NUM_COARSE)):
        if lab.shape != (n,):
            raise DataError(f"{path}: {name!r} has {lab.shape[0] if lab.ndim else 0:,} entries "
                            f"for {n:,} images")
        if not np.issubdtype(lab.dtype, np.integer):
            raise DataError(f"{path}: {name!r} must be integers, found {lab.dtype}")
        if n and (lab.min() < 0 or lab.max() >= k):
            raise DataError(f"{path}: {name!r} out of range: found {lab.min()}..{lab.max()}, "
                            f"allowed 0..{k - 1}")
    counts = np.bincount(fine, minlength=NUM_CLASSES)
    if n and (counts != counts[0]).any():
        raise DataError(f"{path}: classes are not balanced: {counts.min()}..{counts.max()} "
                        f"images per class (CIFAR-100 has an equal number per class)")
    x = torch.from_numpy(data.reshape(n, 3, 32, 32).copy())
    return Split(x, torch.from_numpy(fine.astype(np.int64)), torch.from_numpy(coarse.astype(np.int64)))


def download(root: str | os.PathLike) -> None:
    """Fetch and extract the official archive (md5-checked by torchvision)."""
    from torchvision.datasets.utils import download_and_extract_archive

    root = Path(root)
    archive = root / "cifar-100-python.tar.gz"
    try:
        download_and_extract_archive(ARCHIVE_URL, str(root), filename=archive.name, md5=ARCHIVE_MD5)
    except Exception as e:
        raise DataError(
            f"CIFAR-100 not found under {root / FOLDER} and the download failed "
            f"({type(e).__name__}: {e}). Put the official archive at {archive} (it is extracted "
            f"on the next run), or an extracted copy at {root / FOLDER}, or set HPSTUDY_DATA "
            f"to a folder that holds {FOLDER}/.") from None


def resolve_root(root: str | os.PathLike | None = None) -> Path:
    return Path(root or os.environ.get("HPSTUDY_DATA") or "data").expanduser().resolve()


def load_cifar100(root: str | os.PathLike | None = None, download_missing: bool = True) -> CIFAR100:
    """Load and validate CIFAR-100 from ``root``/cifar-100-python (cached per process).

    ``root`` may also be the ``cifar-100-python`` folder itself.
    """
    root = resolve_root(root)
    if root.name == FOLDER and (root / "meta").exists():
        root = root.parent
    folder = root / FOLDER
    stamp = tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns)
                  for p in sorted(folder.glob("*")) if p.is_file()) if folder.is_dir() else ()
    return _load(str(root), stamp, download_missing)


@functools.lru_cache(maxsize=2)
def _load(root: str, stamp: tuple, download_missing: bool) -> CIFAR100:
    folder = Path(root) / FOLDER
    if not folder.is_dir():
        if (Path(root) / "cifar-100-python.tar.gz").exists() or download_missing:
            download(root)
        else:
            raise DataError(f"CIFAR-100 not found: no folder {folder}. Set HPSTUDY_DATA to the "
                            f"folder that holds {FOLDER}/.")
    files = {}
    for name in ("train", "test", "meta"):
        p = folder / name
        if not p.is_file():
            present = sorted(q.name for q in folder.iterdir())
            raise DataError(f"{p}: missing (the folder holds {present}; expected the official "
                            f"layout {FOLDER}/train, test, meta)")
        files[name] = p
    md5 = {}
    meta, md5["meta"] = _read_pickle(files["meta"])
    for key, k in (("fine_label_names", NUM_CLASSES), ("coarse_label_names", NUM_COARSE)):
        if len(meta.get(key, ())) != k:
            raise DataError(f"{files['meta']}: {key!r} must list {k} names")
    d, md5["train"] = _read_pickle(files["train"])
    train = _split_from(files["train"], d, None)
    d, md5["test"] = _read_pickle(files["test"])
    test = _split_from(files["test"], d, None)
    full = len(train) >= 50000 or len(test) >= 10000
    if full and (len(train), len(test)) != (50000, 10000):
        raise DataError(f"{folder}: expected 50,000 train and 10,000 test images, found "
                        f"{len(train):,} and {len(test):,} (truncated?)")
    return CIFAR100(train, test, list(meta["fine_label_names"]), list(meta["coarse_label_names"]),
                    str(folder), md5)


# --- the split -----------------------------------------------------------------------------

def split_indices(n: int = 50000, n_val: int = 10000, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The report's Listing 1 without touching the global RNG.

    Equal to ``torch.manual_seed(seed); random_split(range(n), [n - n_val, n_val])``:
    random_split takes a ``randperm`` from the default CPU generator.
    """
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=g)
    return perm[: n - n_val].clone(), perm[n - n_val:].clone()


def default_n_val(n: int) -> int:
    """10,000 of 50,000 as in the report; the same fifth for small fixture data sets."""
    return n // 5


def stratified_subset(indices: torch.Tensor, labels: torch.Tensor, n: int | None, seed: int) -> torch.Tensor:
    """``n`` of ``indices``, an equal share per class (remainder to randomly chosen classes).

    ``labels`` are the labels of the whole data set; ``None`` or ``n >= len`` keeps all.
    """
    if n is None or n >= len(indices):
        return indices
    g = torch.Generator().manual_seed(seed)
    idx = indices[torch.randperm(len(indices), generator=g)]
    lab = labels[idx]
    quota = torch.full((NUM_CLASSES,), n // NUM_CLASSES, dtype=torch.long)
    quota[torch.randperm(NUM_CLASSES, generator=g)[: n % NUM_CLASSES]] += 1
    # rank of each element among the elements of its class, in shuffled order
    order = torch.sort(lab, stable=True).indices
    sorted_lab = lab[order]
    starts = torch.searchsorted(sorted_lab, torch.arange(NUM_CLASSES))
    rank = torch.empty_like(order)
    rank[order] = torch.arange(len(order)) - starts[sorted_lab]
    keep = rank < quota[lab]
    if int(keep.sum()) != n:
        raise ValueError(f"cannot draw {n} images stratified by class from {len(indices)}")
    return torch.sort(idx[keep]).values


# --- statistics ------------------------------------------------------------------------------

def _moments(batches) -> tuple[list[float], list[float]]:
    """Per-channel mean and std over uint8 batches scaled to [0, 1] (float64 accumulation)."""
    s = torch.zeros(3, dtype=torch.float64)
    s2 = torch.zeros(3, dtype=torch.float64)
    count = 0
    for x in batches:
        b = x.to(torch.float64) / 255
        s += b.sum(dim=(0, 2, 3))
        s2 += (b * b).sum(dim=(0, 2, 3))
        count += b.shape[0] * b.shape[2] * b.shape[3]
    mean = s / count
    return mean.tolist(), (s2 / count - mean ** 2).sqrt().tolist()


def channel_stats(x: torch.Tensor, chunk: int = 10000) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of uint8 images scaled to [0, 1]."""
    return _moments(x[i:i + chunk] for i in range(0, len(x), chunk))


_STATS: dict = {}


def train_stats(data: CIFAR100, split_seed: int = 0) -> tuple[list[float], list[float]]:
    """Statistics of the un-augmented training split: the correct normalization constants.

    Cached per data identity and split seed (they take a second on the full split).
    """
    key = (data.identity, len(data.train), split_seed)
    if key not in _STATS:
        n = len(data.train)
        tr, _ = split_indices(n, default_n_val(n), split_seed)
        _STATS[key] = channel_stats(data.train.x[tr])
    return _STATS[key]


def augmented_stats(x: torch.Tensor, seed: int = 0, repeats: int = 1,
                    batch: int = 5000) -> tuple[list[float], list[float]]:
    """Statistics the report's way: over randomly flipped, zero-padded random crops.

    The padding brings in black pixels (on average about 13% of a crop), which lowers the mean
    and raises the std: this reproduces the report's printed numbers.
    """
    g = torch.Generator().manual_seed(seed)
    return _moments(augment(x[i:i + batch], g, crop=True, flip=True)
                    for _ in range(repeats) for i in range(0, len(x), batch))


def norm_constants(data: CIFAR100, mode: str, split_seed: int = 0):
    if mode == "published":
        return list(PUBLISHED_MEAN), list(PUBLISHED_STD)
    if mode == "none":
        return [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]
    return train_stats(data, split_seed)


# --- batched augmentation --------------------------------------------------------------------

def augment(x: torch.Tensor, gen: torch.Generator, crop: bool = True, flip: bool = True,
            pad: int = 4) -> torch.Tensor:
    """Random crop from a zero-padded image and horizontal flip, for a whole uint8 batch.

    One gather does both: each image gets row/column index vectors (offset, reversed when
    flipped); positions that fall in the padding read a zero.
    """
    if not (crop or flip):
        return x
    b, c, h, w = x.shape
    dev = x.device
    ar_h = torch.arange(h, device=dev)
    ar_w = torch.arange(w, device=dev)
    if crop:
        off = torch.randint(0, 2 * pad + 1, (b, 2), generator=gen, device=dev) - pad
    else:
        off = torch.zeros(b, 2, dtype=torch.long, device=dev)
    rows = off[:, :1] + ar_h                     # (b, h)
    cols = off[:, 1:] + ar_w                     # (b, w)
    if flip:
        flipped = torch.rand(b, generator=gen, device=dev) < 0.5
        cols = torch.where(flipped[:, None], cols.flip(1), cols)
    valid = ((rows >= 0) & (rows < h))[:, :, None] & ((cols >= 0) & (cols < w))[:, None, :]
    rows = rows.clamp(0, h - 1)
    cols = cols.clamp(0, w - 1)
    flat = (rows[:, :, None] * w + cols[:, None, :]).view(b, 1, h * w).expand(b, c, h * w)
    out = x.reshape(b, c, h * w).gather(2, flat).view(b, c, h, w)
    return out * valid[:, None].to(out.dtype)


def to_input(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor,
             channels_last: bool = True) -> torch.Tensor:
    """uint8 (B, 3, 32, 32) -> normalized float32, in the model's memory format."""
    out = x.float().div_(255).sub_(mean.view(1, 3, 1, 1)).div_(std.view(1, 3, 1, 1))
    return out.contiguous(memory_format=torch.channels_last) if channels_last else out


def mixup(x: torch.Tensor, y: torch.Tensor, alpha: float, rng: np.random.Generator,
          gen: torch.Generator):
    """Mix each image with a partner from a shuffled pairing of the batch.

    Returns ``(mixed_x, y_a, y_b, lam)``; the loss is ``lam * CE(y_a) + (1 - lam) * CE(y_b)``.
    Training accuracy under mixup is defined the same way: ``lam * [pred == y_a] +
    (1 - lam) * [pred == y_b]``, the lambda-weighted agreement with both targets (it equals
    plain accuracy when alpha = 0).
    """
    if alpha <= 0:
        return x, y, y, 1.0
    lam = float(rng.beta(alpha, alpha))
    perm = torch.randperm(x.shape[0], generator=gen, device=x.device)
    mixed = x.mul(lam).add_(x[perm], alpha=1 - lam)
    return mixed, y, y[perm], lam


# --- a run's data ----------------------------------------------------------------------------

@dataclass
class Batches:
    """A split on the device plus how to turn its uint8 images into model input."""
    split: Split
    mean: torch.Tensor
    std: torch.Tensor
    channels_last: bool

    def input(self, x_uint8: torch.Tensor) -> torch.Tensor:
        return to_input(x_uint8, self.mean, self.std, self.channels_last)


def subset_indices(cfg: Config, data: CIFAR100) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of the run's training and validation images: the report's split, then the
    stratified subsets ``n_train``/``n_val``. A size the split cannot give is a ConfigError
    naming the key (the run store calls this before a run starts)."""
    n = len(data.train)
    split = split_indices(n, default_n_val(n), cfg.split_seed)
    out = []
    for key, idx, seed in zip(("n_train", "n_val"), split, (cfg.subset_seed, cfg.subset_seed + 1)):
        v = getattr(cfg, key)
        if v is not None and v > len(idx):
            raise ConfigError(f"parameter {key!r}: the split of {data.root} holds {len(idx):,} "
                              f"images (got {v:,}); use None for all of them")
        try:
            out.append(stratified_subset(idx, data.train.fine, v, seed))
        except ValueError as e:
            raise ConfigError(f"parameter {key!r}: {e}") from None
    return out[0], out[1]


def prepare_data(cfg: Config, data: CIFAR100, device: torch.device) -> tuple[Batches, Batches]:
    """The run's training and validation images (the subsets of the 40k/10k split), on
    ``device``, with its normalization."""
    tr, va = subset_indices(cfg, data)
    mean, std = norm_constants(data, cfg.normalize, cfg.split_seed)
    mean_t = torch.tensor(mean, device=device)
    std_t = torch.tensor(std, device=device)
    mk = lambda idx: Batches(data.train.subset(idx).to(device), mean_t, std_t, cfg.channels_last)  # noqa: E731
    return mk(tr), mk(va)
