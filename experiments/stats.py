"""
stats.py -- paired comparisons: the difference of two models, with a 95% bootstrap interval.

Two models scored on the same items (BLiMP pairs, held-out blocks, fine-tuning
seeds) are compared item by item: the items are resampled with replacement,
the same draw for both models, and the 2.5th and 97.5th percentiles of the
resampled difference bound it. Resampling the items both models share takes
what they share (how hard each item is) out of the interval, which is what
makes it narrow. ablation.py and transfer.py report their tables with these.
"""

import numpy as np

DRAWS = 2000


def interval(point, draws):
    return point, float(np.percentile(draws, 2.5)), float(np.percentile(draws, 97.5))


def paired_blimp(a, b, rng):
    """BLiMP accuracy (points) of b minus a: within each paradigm its pairs are resampled, the
    mean over paradigms as BLiMP reports it."""
    draws = np.zeros(DRAWS)
    for name, right_a in a["correct"].items():
        right_a, right_b = np.array(right_a), np.array(b["correct"][name])
        rows = rng.integers(0, len(right_a), (DRAWS, len(right_a)))
        draws += right_b[rows].mean(1) - right_a[rows].mean(1)
    return interval(100 * (b["accuracy"] - a["accuracy"]), 100 * draws / len(a["correct"]))


def paired_mlm(a, b, rng):
    """Held-out MLM loss of b minus a on the same masked tokens; the blocks are resampled."""
    loss_a, loss_b, count = np.array(a["loss"]), np.array(b["loss"]), np.array(a["count"])
    rows = rng.integers(0, len(count), (DRAWS, len(count)))
    draws = (loss_b[rows].sum(1) - loss_a[rows].sum(1)) / count[rows].sum(1)
    return interval((loss_b.sum() - loss_a.sum()) / count.sum(), draws)


def paired_seeds(a, b, rng):
    """The mean over seeds of b minus a, each seed's score against the same seed's; seeds resampled."""
    d = np.asarray(b) - np.asarray(a)
    return interval(float(d.mean()), d[rng.integers(0, len(d), (DRAWS, len(d)))].mean(1))


def cell(point, low, high, digits):
    mark = " *" if low > 0 or high < 0 else ""  # the interval excludes zero
    return f"{point:+.{digits}f} [{low:+.{digits}f}, {high:+.{digits}f}]{mark}"
