"""Statistical checks on a fixed seed set (``make test-slow``): properties of the benchmark and of the methods
that only show over several full training runs."""

import statistics

import pytest

from explearn import datasets, train

SEEDS = (0, 1, 2)
pytestmark = pytest.mark.slow


def test_label_only_training_takes_the_spurious_shortcut():
    gaps = []
    for seed in SEEDS:
        data = datasets.triangles(n_train=500, seed=seed, spurious_rate=1.0)
        m = train(data, "standard", seed=seed, epochs=15, quiet=True).metrics
        gaps.append(m["test_spurious/acc"] - m["test/acc"])
    assert min(gaps) > 0.1, gaps


def test_rrr_moves_input_gradients_into_the_mask():
    # measured on seeds 0-2 at 15 epochs: +0.039, +0.021, +0.019 over standard's ~0.09 (see README)
    diffs = []
    for seed in SEEDS:
        data = datasets.triangles(n_train=500, seed=seed)
        std = train(data, "standard", seed=seed, epochs=15, quiet=True).metrics["test/align"]
        rrr = train(data, "rrr", seed=seed, epochs=15, hparams={"lam": 100.0}, quiet=True).metrics["test/align"]
        diffs.append(rrr - std)
    assert min(diffs) > 0 and statistics.mean(diffs) > 0.01, diffs


def test_calibrated_label_only_accuracy_is_in_range():
    accs = [train(datasets.triangles(n_train=500, seed=s), "standard", seed=s, quiet=True).metrics["test/acc"]
            for s in SEEDS]
    assert 0.68 <= statistics.mean(accs) <= 0.82, accs
