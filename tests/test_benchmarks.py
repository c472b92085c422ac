"""The benchmarks from other work (`explearn reproduce benchmarks`): the smoke preset end to end on the real MNIST
files, every method on Decoy-MNIST, ColorMNIST and Toy Colors, published numbers beside ours."""

import pandas as pd
import pytest

from explearn.metrics import metric_bounds
from explearn.reproduce import reproduce
from explearn.specs import experiments_dir, load_specs


@pytest.fixture(scope="module")
def smoke(tmp_path_factory, data_dir):
    out = tmp_path_factory.mktemp("benchmarks")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EXPLEARN_DATA", str(data_dir))  # the worker processes read MNIST from here
        (summary,), outcome = reproduce("benchmarks", "smoke", out, workers=2, log=lambda _: None)
    return out, summary, outcome


def test_every_benchmark_method_and_setting_runs(smoke):
    out, summary, outcome = smoke
    assert not outcome.failed, outcome.failed
    results = pd.read_csv(out / "results.csv")
    text = summary.read_text()
    for spec in load_specs(experiments_dir("benchmarks"), "smoke"):
        ran = results[results["experiment"] == spec.name]
        for setting in spec.settings:
            assert set(ran[ran["setting"] == setting.label]["method"]) == set(spec.methods_for(setting)), spec.name
        for metric in spec.headline:  # every headline metric was measured, within its range
            assert ran[metric].between(*metric_bounds(metric)).all(), (spec.name, metric)
    decoy = results[results["experiment"].str.startswith("decoy")]
    assert decoy["test/wrong_score"].notna().all()  # Decoy-MNIST test images carry the patch as a wrong reason
    assert {"rrr_gradcam", "hint", "counterexamples"} <= set(results["method"])
    assert "## Published numbers beside ours" in text and "Ross et al. 2017" in text


def test_ten_class_benchmarks_have_ten_classes(smoke):
    out, _, _ = smoke
    results = pd.read_csv(out / "results.csv")
    mnist = results[results["experiment"].isin(["decoy_mnist_cnn", "color_mnist"])]
    assert {f"test/acc_class{k}" for k in range(10)} <= set(mnist.columns)
    assert mnist["test/acc_class9"].notna().all()
