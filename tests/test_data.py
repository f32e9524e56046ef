"""CIFAR-100 loading, the report's 40k/10k split, stratified subsets, statistics.

Real-data tests use the ``real_root`` fixture: they skip without HPSTUDY_DATA (CI sets it).
"""
from __future__ import annotations

import hashlib
import pickle

import numpy as np
import pytest
import torch
from torch.utils.data import random_split

from hpstudy import data as D
from hpstudy.data import split_indices, stratified_subset

from conftest import write_tiny_cifar

realdata = pytest.mark.realdata


# --- the split -------------------------------------------------------------------------------

def test_split_equals_the_reports_listing():
    torch.manual_seed(0)
    train, val = random_split(range(50000), [40000, 10000])
    tr, va = split_indices(n=50000, n_val=10000, seed=0)
    assert tr.dtype == va.dtype == torch.int64
    assert tr.tolist() == list(train.indices)
    assert va.tolist() == list(val.indices)


def test_split_other_seed_and_small_n_match_random_split_too():
    torch.manual_seed(7)
    train, val = random_split(range(1000), [800, 200])
    tr, va = split_indices(1000, 200, seed=7)
    assert tr.tolist() == list(train.indices) and va.tolist() == list(val.indices)
    assert split_indices(1000, 200, 8)[0].tolist() != tr.tolist()


def test_split_is_a_partition():
    tr, va = split_indices()
    assert (len(tr), len(va)) == (40000, 10000)
    assert torch.equal(torch.sort(torch.cat([tr, va])).values, torch.arange(50000))


def test_split_does_not_disturb_the_global_rng():
    torch.manual_seed(123)
    expected = torch.rand(5)
    torch.manual_seed(123)
    split_indices(50000, 10000, 0)
    assert torch.equal(torch.rand(5), expected)


def test_default_n_val_is_a_fifth():
    assert D.default_n_val(50000) == 10000
    assert D.default_n_val(1000) == 200


# --- stratified subsets ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def labels_and_train_idx():
    rng = np.random.default_rng(0)
    labels = torch.from_numpy(rng.permutation(np.repeat(np.arange(100), 500)))
    tr, _ = split_indices(50000, 10000, 0)
    return labels, tr


@pytest.mark.parametrize("n", [100, 2000, 2050, 4321, 30000])
def test_stratified_subset_has_equal_class_counts(labels_and_train_idx, n):
    labels, tr = labels_and_train_idx
    sub = stratified_subset(tr, labels, n, seed=0)
    assert len(sub) == n
    assert len(torch.unique(sub)) == n
    assert torch.isin(sub, tr).all()
    counts = torch.bincount(labels[sub], minlength=100)
    assert counts.max() - counts.min() <= 1
    assert counts.min() == n // 100


def test_stratified_subset_is_reproducible_and_seeded(labels_and_train_idx):
    labels, tr = labels_and_train_idx
    a = stratified_subset(tr, labels, 2000, seed=0)
    b = stratified_subset(tr, labels, 2000, seed=0)
    c = stratified_subset(tr, labels, 2000, seed=1)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_stratified_subset_none_or_too_large_keeps_all(labels_and_train_idx):
    labels, tr = labels_and_train_idx
    assert torch.equal(stratified_subset(tr, labels, None, 0), tr)
    assert torch.equal(stratified_subset(tr, labels, 40000, 0), tr)


def test_stratified_subset_refuses_what_the_classes_cannot_give():
    labels = torch.cat([torch.zeros(500, dtype=torch.long), torch.arange(1, 100)])
    with pytest.raises(ValueError, match="cannot draw 300"):
        stratified_subset(torch.arange(len(labels)), labels, 300, 0)


# --- loading the tiny fixture ----------------------------------------------------------------

def test_load_tiny(tiny_root):
    d = D.load_cifar100(tiny_root, download_missing=False)
    assert (len(d.train), len(d.test)) == (1000, 200)
    assert d.train.x.shape == (1000, 3, 32, 32) and d.train.x.dtype == torch.uint8
    assert d.train.fine.dtype == torch.int64
    assert torch.equal(d.train.coarse, d.train.fine // 5)
    assert torch.bincount(d.train.fine, minlength=100).tolist() == [10] * 100
    assert len(d.fine_names) == 100 and len(d.coarse_names) == 20
    assert set(d.md5) == {"train", "test", "meta"}
    assert d.official is False
    assert d.describe()["matches"] == {"train": False, "test": False, "meta": False}
    # the folder itself is accepted too, and the identity is a function of the bytes
    d2 = D.load_cifar100(tiny_root / "cifar-100-python", download_missing=False)
    assert d2.identity == d.identity and len(d.identity) == 16


def test_pixel_layout_is_rgb_planes(tmp_path):
    root = write_tiny_cifar(tmp_path)
    p = root / "cifar-100-python" / "train"
    raw = pickle.loads(p.read_bytes(), encoding="latin1")
    d = D.load_cifar100(root, download_missing=False)
    row = raw["data"][3]
    assert torch.equal(d.train.x[3, 0].flatten(), torch.from_numpy(row[:1024]))      # R
    assert torch.equal(d.train.x[3, 2].flatten(), torch.from_numpy(row[2048:]))      # B
    assert d.train.x[3, 1, 0, 1] == row[1024 + 1]                                   # row-major


def test_channel_stats_are_exact():
    x = torch.zeros(2, 3, 32, 32, dtype=torch.uint8)
    x[0, 0] = 255                                   # red: half the pixels 1, half 0
    x[:, 1] = 51                                    # green: constant 0.2
    mean, std = D.channel_stats(x, chunk=1)
    assert mean == pytest.approx([0.5, 0.2, 0.0])
    assert std == pytest.approx([0.5, 0.0, 0.0], abs=1e-6)


def test_augmented_stats_darken_the_mean():
    x = torch.full((64, 3, 32, 32), 200, dtype=torch.uint8)
    plain, _ = D.channel_stats(x)
    aug, _ = D.augmented_stats(x, seed=0)
    assert all(a < p for a, p in zip(aug, plain))           # zero padding brings in black
    assert D.augmented_stats(x, seed=0) == D.augmented_stats(x, seed=0)


# --- the real data set -----------------------------------------------------------------------

@pytest.fixture
def real(real_root):
    # load_cifar100 caches per process: the 180 MB are read once for all these tests
    return D.load_cifar100(real_root, download_missing=False)


@realdata
def test_real_sizes_and_class_counts(real):
    assert (len(real.train), len(real.test)) == (50000, 10000)
    assert torch.bincount(real.train.fine, minlength=100).tolist() == [500] * 100
    assert torch.bincount(real.test.fine, minlength=100).tolist() == [100] * 100
    assert torch.bincount(real.train.coarse, minlength=20).tolist() == [2500] * 20
    assert real.fine_names[:3] == ["apple", "aquarium_fish", "baby"]


@realdata
def test_real_md5_is_of_the_bytes_read(real, real_root):
    # holds for the official release and for a re-pickled copy alike: no file's md5 is pinned
    # except meta's, which every known copy shares with the official release
    desc = real.describe()
    folder = real_root / "cifar-100-python"
    for name in ("train", "test", "meta"):
        md5 = desc["md5"][name]
        assert len(md5) == 32 and all(ch in "0123456789abcdef" for ch in md5)
        assert md5 == hashlib.md5((folder / name).read_bytes()).hexdigest()
        assert desc["matches"][name] == (md5 == D.OFFICIAL_MD5[name])
    assert desc["md5"]["meta"] == D.OFFICIAL_MD5["meta"]
    assert real.official == desc["official"] == all(desc["matches"].values())


def test_official_is_computed_from_the_md5_of_the_bytes_read(tmp_path, monkeypatch):
    root = write_tiny_cifar(tmp_path)
    folder = root / "cifar-100-python"
    own = {name: hashlib.md5((folder / name).read_bytes()).hexdigest()
           for name in ("train", "test", "meta")}
    d = D.load_cifar100(root, download_missing=False)
    assert d.md5 == own

    # the tiny files' own md5s as the "official" ones: the release is recognised
    monkeypatch.setattr(D, "OFFICIAL_MD5", dict(own))
    assert d.official is True
    assert d.describe()["matches"] == {"train": True, "test": True, "meta": True}
    assert d.describe()["official_md5"] == own

    # one official md5 that differs: not official, and the mismatch is named per file
    monkeypatch.setattr(D, "OFFICIAL_MD5", {**own, "train": "0" * 32})
    assert d.official is False
    assert d.describe()["matches"] == {"train": False, "test": True, "meta": True}

    # the same content pickled differently is other bytes: no longer the "official" file
    monkeypatch.setattr(D, "OFFICIAL_MD5", dict(own))
    raw = pickle.loads((folder / "test").read_bytes(), encoding="latin1")
    (folder / "test").write_bytes(pickle.dumps(raw, protocol=4))
    d2 = D.load_cifar100(root, download_missing=False)
    assert torch.equal(d2.test.x, d.test.x)                     # same images and labels
    assert d2.md5["test"] == hashlib.md5((folder / "test").read_bytes()).hexdigest() != own["test"]
    assert d2.official is False
    assert d2.describe()["matches"] == {"train": True, "test": False, "meta": True}
    assert d2.identity != d.identity


@realdata
def test_real_train_split_statistics(real):
    mean, std = D.train_stats(real, 0)
    assert mean == pytest.approx([0.507, 0.487, 0.441], abs=0.002)
    assert std == pytest.approx([0.267, 0.256, 0.276], abs=0.002)


@realdata
def test_augmented_stats_reproduce_the_reports_numbers(real):
    tr, _ = split_indices(50000, 10000, 0)
    mean, std = D.augmented_stats(real.train.x[tr], seed=0)
    assert mean == pytest.approx(list(D.PUBLISHED_MEAN), abs=0.003)
    assert std == pytest.approx(list(D.PUBLISHED_STD), abs=0.003)
