import json

import pytest
import torch

from explearn import ConfigError, datasets, train
from explearn.models import ExplainableNet


def test_same_seed_gives_identical_metrics_twice(tiny):
    a = train(tiny, "two_stage", seed=1, epochs=2, quiet=True)
    b = train(tiny, "two_stage", seed=1, epochs=2, quiet=True)
    assert a.history == b.history
    assert {k: v for k, v in a.metrics.items() if not k.startswith("time/")} == \
           {k: v for k, v in b.metrics.items() if not k.startswith("time/")}
    c = train(tiny, "two_stage", seed=2, epochs=2, quiet=True)
    assert c.history != a.history


def test_seeds_are_paired_across_methods(tiny):
    # epoch 0 is evaluated before any update: identical initialisation for every method with one run seed
    std = train(tiny, "standard", seed=3, epochs=1, curves="all", quiet=True)
    two = train(tiny, "rrr", seed=3, epochs=1, curves="all", quiet=True)
    assert std.curve("acc", "test")[0] == two.curve("acc", "test")[0]
    assert [r for r in std.history if r["epoch"] == 0] == [r for r in two.history if r["epoch"] == 0]


def test_result_holds_config_curves_and_final_metrics(tiny, tmp_path):
    result = train(tiny, "two_stage", seed=0, epochs=3, hparams={"lr_ratio": 10}, curves="all", quiet=True)
    cfg = result.config
    assert cfg["method"] == "two_stage" and cfg["hparams"]["lr_ratio"] == 10.0 and cfg["hparams"]["loss"] == "kl"
    assert cfg["model"]["options"]["mapping"] == "linear" and cfg["data"]["dataset"] == "triangles"
    assert len(result.curve("acc", "test")) == 4  # epochs 0..3
    assert len(result.curve("align_loss", "train")) == 3
    for key in ("test/acc", "test/balanced_acc", "test/acc_class0", "test/align", "val/acc", "selected_epoch"):
        assert key in result.metrics
    assert "test/minority_acc" not in result.metrics  # balanced training classes: no minority class (issue 12)
    assert 1 <= result.metrics["selected_epoch"] <= 3
    assert len(result.predictions["test"]) == len(tiny.test)
    saved = json.loads(result.save(tmp_path / "run").read_text())
    assert saved["config"] == json.loads(json.dumps(cfg)) and saved["metrics"]["test/acc"] == result.metrics["test/acc"]


def test_best_val_selection_reports_the_best_validation_epoch(tiny):
    result = train(tiny, "standard", seed=0, epochs=4, quiet=True)
    val = result.curve("acc", "val")[1:]
    epoch = result.metrics["selected_epoch"]
    assert val[epoch - 1] == max(val) and epoch - 1 == val.index(max(val))
    assert result.metrics["val/acc"] == pytest.approx(max(val))
    last = train(tiny, "standard", seed=0, epochs=4, select="last", curves="all", quiet=True)
    assert last.metrics["selected_epoch"] == 4 and last.metrics["test/acc"] == last.curve("acc", "test")[-1]


def test_imbalanced_data_report_the_minority_class():
    data = datasets.triangles(n_train=20, seed=0, n_val=10, n_test=20, image_size=16, train_per_class=(16, 4))
    result = train(data, "standard", seed=0, epochs=1, quiet=True)
    assert result.metrics["test/minority_acc"] == result.metrics["test/acc_class1"]


def test_mask_methods_refuse_data_without_masks(tiny):
    nomask = datasets.Splits(
        datasets.ExplanationDataset(tiny.train.x, tiny.train.y, None), tiny.val, tiny.test)
    with pytest.raises(ConfigError, match="method 'rrr' needs explanation masks"):
        train(nomask, "rrr", epochs=1, quiet=True)
    assert train(nomask, "standard", epochs=1, quiet=True).metrics["test/acc"] >= 0


def test_config_mistakes_are_named(tiny):
    with pytest.raises(ConfigError, match="unknown method 'two_stag'; did you mean 'two_stage'"):
        train(tiny, "two_stag", quiet=True)
    with pytest.raises(ConfigError, match="unknown setting 'lr_ration' \\(did you mean 'lr_ratio'.*for method 'two_stage'"):
        train(tiny, "two_stage", hparams={"lr_ration": 2}, quiet=True)
    with pytest.raises(ConfigError, match="'schedule': 'epochs' is not one of .*did you mean 'epoch'"):
        train(tiny, "two_stage", hparams={"schedule": "epochs"}, quiet=True)
    with pytest.raises(ConfigError, match="unknown setting 'maping'"):
        train(tiny, "standard", model_options={"maping": "mlp"}, quiet=True)
    with pytest.raises(ConfigError, match="epochs must be >= 1"):
        train(tiny, "standard", epochs=0, quiet=True)


def test_a_user_model_with_three_parts_works_with_every_method(tiny):
    from explearn.methods import METHODS

    for name in METHODS.names():
        net = ExplainableNet(
            torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU()),
            torch.nn.Conv2d(4, 4, 1),
            torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4 * 16 * 16, 2)),
        )
        result = train(tiny, name, model=net, epochs=1, quiet=True)
        assert result.config["model"] == {"name": "custom", "class": "ExplainableNet"}
        assert 0 <= result.metrics["test/acc"] <= 1


def test_balanced_selection_uses_validation_balanced_accuracy():
    data = datasets.triangles(n_train=20, seed=0, n_val=20, n_test=20, image_size=16, train_per_class=(18, 2))
    result = train(data, "standard", seed=0, epochs=4, select="best_val_balanced", quiet=True)
    val = result.curve("balanced_acc", "val")[1:]
    assert result.metrics["selected_epoch"] - 1 == val.index(max(val))


def test_per_epoch_evaluation_reads_only_the_validation_split_by_default(tiny):
    # issue 13: model selection reads validation only; evaluating every split after every epoch took about a third
    # of a run. The final metrics still cover every split, attribution ones with their interval and sample size.
    result = train(tiny, "standard", seed=0, epochs=2, quiet=True)
    assert {r["split"] for r in result.history} == {"val", "train"}  # train: the epoch's logged losses only
    assert {r["metric"] for r in result.history if r["split"] == "train"} <= {"ce", "grad_norm"}
    m = result.metrics
    assert {"test/acc", "val/acc", "train/acc", "test/align", "test/align_ci_low", "test/align_n"} <= set(m)
    assert m["test/align_n"] == min(500, len(tiny.test)) and m["test/align_ci_low"] == m["test/align"]
