"""What the data notebook (``00_data.ipynb``) calls: where the images come from, the split,
the classes, sample images and the normalization constants, one method per step, and the
results JSON it records (``data`` in the index page).

    S = notebook.start("data", globals())      # validate, load the data
    S.source(); S.md5(); S.split(); S.class_proportions(); S.class_counts(); S.samples()
    S.stats_table(); S.stats_figure(); S.reading(); S.record()

Each number is computed once (cached on the session), so the sentences, the figures and the
results JSON show the same values.
"""
from __future__ import annotations

from functools import cached_property

import pandas as pd
import torch
from IPython.display import Markdown
from matplotlib.figure import Figure

from . import data as D
from . import evaluation, plots, readings
from .studies import Params, write_json

PAD = 4  # the report's RandomCrop(32, padding=4), as ``data.augment`` crops


def black_fraction(pad: int = PAD, size: int = 32) -> float:
    """The mean share of padding (black) pixels in a random ``size`` x ``size`` crop of an
    image zero-padded by ``pad`` on each side, the offset uniform in [-pad, pad] per axis."""
    return 1 - (sum(size - abs(d) for d in range(-pad, pad + 1)) / (2 * pad + 1) / size) ** 2


class DataSession:
    """The data notebook's state: its parameters, the data set and what it shows."""

    name = "data"

    def __init__(self, p: Params):
        self.p = p

    def header(self) -> Markdown:
        p = self.p
        pre = f" (preset `{p['preset']}`)" if p.get("preset") else ""
        return Markdown(f"**{p.study.title}**{pre}: split seed {p['split_seed']}; "
                        f"{p['n_samples']} sample images and the augmented crops drawn with "
                        f"seed {p['seed']}; runs normalize with `{self.normalize}`.")

    @property
    def normalize(self) -> str:
        return self.p.get("normalize", "train")

    # --- the files ---------------------------------------------------------------------------

    @cached_property
    def data(self) -> D.CIFAR100:
        return D.load_cifar100(self.p.get("data_root"))

    @cached_property
    def described(self) -> dict:
        """``CIFAR100.describe()``: root, md5s, the official md5s, whether they match, sizes."""
        return self.data.describe()

    def source(self) -> Markdown:
        s = self.described
        return Markdown(f"Folder `{s['root']}`: {s['n_train']:,} training and "
                        f"{s['n_test']:,} test images; "
                        + ("**all files match the official release.**" if s["official"] else
                           "**these files are not the official release** (see the table)."))

    def md5(self) -> pd.DataFrame:
        s = self.described
        return pd.DataFrame({"md5": s["md5"], "official md5": s["official_md5"],
                             "matches": s["matches"]})

    # --- the split ---------------------------------------------------------------------------

    @cached_property
    def indices(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(training, validation) indices into the official training set."""
        n = len(self.data.train)
        return D.split_indices(n, D.default_n_val(n), self.p["split_seed"])

    @cached_property
    def matches_random_split(self) -> bool:
        """Whether the split is the report's Listing 1, verbatim: ``torch.manual_seed(seed)``
        followed by ``random_split`` (run on a fork of the global RNG, which it leaves as it
        was)."""
        n = len(self.data.train)
        n_val = D.default_n_val(n)
        train_idx, val_idx = self.indices
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.p["split_seed"])
            listing_train, listing_val = torch.utils.data.random_split(range(n),
                                                                       [n - n_val, n_val])
        return (list(listing_train.indices) == train_idx.tolist()
                and list(listing_val.indices) == val_idx.tolist())

    def split(self) -> Markdown:
        train_idx, val_idx = self.indices
        same, seed = self.matches_random_split, self.p["split_seed"]
        return Markdown(
            f"**{len(train_idx):,} training / {len(val_idx):,} validation images** (split seed "
            f"{seed}). First training indices: `{train_idx[:8].tolist()}`; first validation "
            f"indices: `{val_idx[:8].tolist()}`. "
            + ("Identical to `random_split` after `torch.manual_seed`" if same else
               "**Differs from `random_split`** after `torch.manual_seed`")
            + (": this is the report's Listing 1."
               if len(self.data.train) == 50000 and seed == 0 and same else "."))

    # --- the classes -------------------------------------------------------------------------

    @cached_property
    def counts(self) -> torch.Tensor:
        """Training-split images per fine class."""
        return torch.bincount(self.data.train.fine[self.indices[0]], minlength=D.NUM_CLASSES)

    def class_proportions(self) -> Figure:
        d = self.data
        return plots.class_proportions(d.train.fine[self.indices[0]], d.fine_names,
                                       evaluation.fine_to_coarse(d), d.coarse_names)

    def class_counts(self) -> Markdown:
        c = self.counts
        return Markdown(
            f"Images per class in the training split: {int(c.min())} to {int(c.max())} "
            f"(mean {c.double().mean():.0f}); the official training set has exactly "
            f"{len(self.data.train) // D.NUM_CLASSES} per class, and the random split leaves "
            f"this small imbalance. The subsets that quick runs use (`n_train`, `n_val`) are "
            f"drawn stratified by class.")

    def samples(self) -> Figure:
        """``n_samples`` random training images (drawn with ``seed``), fine and superclass."""
        train_idx, d = self.indices[0], self.data
        g = torch.Generator().manual_seed(self.p["seed"])
        pick = train_idx[torch.randperm(len(train_idx), generator=g)[:self.p["n_samples"]]]
        return plots.sample_grid(d.train.x[pick], d.train.fine[pick], d.train.coarse[pick],
                                 d.fine_names, d.coarse_names)

    # --- normalization -----------------------------------------------------------------------

    @cached_property
    def proper(self) -> tuple[list[float], list[float]]:
        """Per-channel mean and std of the training split as it is: the right constants."""
        return D.train_stats(self.data, self.p["split_seed"])

    @cached_property
    def augmented(self) -> tuple[list[float], list[float]]:
        """The same over flipped, zero-padded random crops (the report's way)."""
        return D.augmented_stats(self.data.train.x[self.indices[0]], seed=self.p["seed"],
                                 repeats=self.p["stats_repeats"])

    def statistics(self) -> dict:
        """name -> (mean, std): the proper ones, the report's printed ones, the augmented."""
        return {"training split (proper)": self.proper,
                "report (printed)": (D.PUBLISHED_MEAN, D.PUBLISHED_STD),
                "augmented crops": self.augmented}

    def stats_table(self) -> pd.DataFrame:
        return pd.DataFrame({name: [*m, *s] for name, (m, s) in self.statistics().items()},
                            index=[f"{w} {c}" for w in ("mean", "std") for c in "RGB"]).T.round(4)

    def stats_figure(self) -> Figure:
        return plots.normalization_stats(self.statistics())

    def reading(self) -> Markdown:
        proper, augmented, black = self.proper, self.augmented, black_fraction()
        gap = max(abs(a - b) for a, b in zip([*augmented[0], *augmented[1]],
                                             [*D.PUBLISHED_MEAN, *D.PUBLISHED_STD]))
        return Markdown(
            f"The report's numbers are not the statistics of the training images (mean "
            f"{', '.join(f'{v:.3f}' for v in proper[0])}): they are reproduced, to within "
            f"{gap:.4f}, by statistics over augmented crops. A random crop from a {PAD}-pixel "
            f"zero-padded image is on average {100 * black:.1f}% black pixels, which darkens "
            f"the mean (by about that fraction: "
            f"{', '.join(f'{v * (1 - black):.3f}' for v in proper[0])}) and widens the std. "
            f"Normalizing with them still trains (they are only a shift and scale), but the "
            f"method is wrong: the constants should describe the images the network sees "
            f"before augmentation. "
            + readings.normalization_in_use(self.normalize, self.p.get("preset")))

    # --- results -----------------------------------------------------------------------------

    def results(self) -> dict:
        """The results JSON (``data`` on the index page)."""
        train_idx, val_idx = self.indices
        stats = {"train": self.proper, "report": (D.PUBLISHED_MEAN, D.PUBLISHED_STD),
                 "augmented": self.augmented}
        return {"study": "data", "preset": self.p.get("preset"),
                "report_id": self.p.get("report_id"), "data": {
            # root, md5, official_md5, official, matches, n_train, n_test (the official files)
            **self.described,
            "split": {"n_train": len(train_idx), "n_val": len(val_idx),
                      "split_seed": self.p["split_seed"],
                      "first_train": train_idx[:10].tolist(),
                      "first_val": val_idx[:10].tolist(),
                      "matches_random_split": self.matches_random_split},
            "class_counts": {"min": int(self.counts.min()), "max": int(self.counts.max()),
                             "per_class": self.counts.tolist()},
            "stats": {name: {"mean": list(m), "std": list(s)} for name, (m, s) in stats.items()},
            "black_fraction": black_fraction(), "normalize": self.normalize,
        }}

    def record(self) -> dict:
        """The results, written to ``results_path`` when it is set."""
        results = self.results()
        if self.p.get("results_path"):
            write_json(self.p["results_path"], results)
        return results
