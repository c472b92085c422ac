"""Selection protocols (explearn.selection) on hand-made histories and data, and as train() records them."""

import pytest
import torch

from explearn import datasets, train
from explearn.datasets.base import ExplanationDataset
from explearn.selection import DELTA, Tracker, intervene


def feed(tracker: Tracker, rows: list[tuple[float, float]]) -> None:
    """rows: (validation accuracy, intervened accuracy) per epoch 1, 2, ...; the state is the epoch itself."""
    for epoch, (acc, intervened) in enumerate(rows, start=1):
        scores = {"val": {"acc": acc}, "val_intervened": {"acc": intervened}}
        tracker.observe(epoch, scores, lambda epoch=epoch: {"epoch": torch.tensor(epoch)})


def test_train_like_takes_the_earliest_best_and_counts_ties():
    t = Tracker("acc", explanation=False, oracle=True)
    feed(t, [(0.5, 0), (0.8, 0), (0.8, 0), (0.7, 0)])
    chosen = t.chosen()
    assert chosen["train_like"]["selected_epoch"] == 2 and chosen["train_like"]["tied_epochs"] == 2
    assert int(chosen["train_like"]["state"]["epoch"]) == 2
    assert chosen["oracle"]["selected_epoch"] == 4  # the last epoch, no early stopping
    assert "explanation" not in chosen


def test_a_protocol_that_cannot_tell_the_epochs_apart_says_so():
    t = Tracker("acc", explanation=True, oracle=False)
    feed(t, [(1.0, 0.5)] * 4)  # 100 % spurious: validation accuracy 1.000 at every epoch
    chosen = t.chosen()
    assert chosen["train_like"]["tied_epochs"] == 4 and chosen["train_like"]["selected_epoch"] == 1
    assert chosen["explanation"]["tied_epochs"] == 4


def test_explanation_takes_the_lowest_reliance_within_delta_of_the_best():
    t = Tracker("acc", explanation=True, oracle=False)
    # reliance = acc - intervened: 0.1, 0.5, 0.05, 0.3, 0.0; best 0.81, window >= 0.79: epochs 2, 3, 4
    feed(t, [(0.70, 0.60), (0.80, 0.30), (0.79, 0.74), (0.81, 0.51), (0.60, 0.60)])
    chosen = t.chosen()["explanation"]
    assert chosen["selected_epoch"] == 3 and int(chosen["state"]["epoch"]) == 3
    assert DELTA == 0.02


def test_explanation_ties_go_to_the_higher_score_then_the_earlier_epoch():
    t = Tracker("acc", explanation=True, oracle=False)
    feed(t, [(0.80, 0.70), (0.81, 0.71), (0.81, 0.71)])  # reliance 0.1 each time
    assert t.chosen()["explanation"]["selected_epoch"] == 2
    assert t.chosen()["explanation"]["tied_epochs"] == 2


def test_explanation_keeps_the_state_of_an_earlier_epoch_that_becomes_the_choice():
    t = Tracker("acc", explanation=True, oracle=False)
    # after epoch 3 the choice is epoch 2 (reliance 0.1); epoch 4 raises the best to 0.815, so the window
    # (>= 0.795) drops epoch 2 and the choice falls back to epoch 1, whose state must still be there
    feed(t, [(0.80, 0.60), (0.79, 0.69), (0.81, 0.51), (0.815, 0.565)])
    chosen = t.chosen()["explanation"]
    assert chosen["selected_epoch"] == 1 and int(chosen["state"]["epoch"]) == 1
    assert len(t.candidates) <= 3  # dominated epochs are not kept


def test_balanced_accuracy_ranks_epochs_under_best_val_balanced():
    t = Tracker("balanced_acc", explanation=False, oracle=False)
    for epoch, (acc, bal) in enumerate([(0.9, 0.5), (0.8, 0.7)], start=1):
        t.observe(epoch, {"val": {"acc": acc, "balanced_acc": bal}}, lambda: {})
    assert t.chosen()["train_like"]["selected_epoch"] == 2


def test_intervention_carries_the_other_images_wrong_reason_region_over():
    x = torch.arange(4 * 16, dtype=torch.float32).reshape(4, 1, 4, 4)
    wrong = torch.zeros(4, 1, 4, 4)
    wrong[0, 0, 0, 0] = 1  # image 0: top-left; image 1: bottom-right; image 2: none; image 3: top-left
    wrong[1, 0, 3, 3] = 1
    wrong[3, 0, 0, 0] = 1
    has = torch.tensor([True, True, False, True])
    ds = ExplanationDataset(x, torch.tensor([0, 1, 1, 0]), None, None, 2, None, "hand", wrong, has)
    out = intervene(ds, seed=0)
    assert torch.equal(out.x[2], x[2])  # no wrong-reason mask: unchanged
    for i in (0, 1, 3):
        # the result is x_i with U = W_i or W_j replaced by x_j, for one j of another class
        matches = []
        for j in range(4):
            region = (wrong[i] + wrong[j] * has[j]).clamp(0, 1)
            if int(ds.y[j]) != int(ds.y[i]) and torch.equal(out.x[i], x[i] * (1 - region) + x[j] * region):
                matches.append(j)
        assert len(matches) == 1
    assert torch.equal(out.y, ds.y) and torch.equal(out.wrong_mask, ds.wrong_mask)
    assert torch.equal(intervene(ds, seed=0).x, out.x)  # a fixed pairing


def test_intervention_on_triangles_moves_the_square_to_another_class():
    data = datasets.triangles(n_train=8, seed=0, n_val=40, n_test=8, spurious_rate=1.0)
    out = intervene(data.val)
    own = data.val.wrong_mask.bool()
    assert (out.x[own] != data.val.x[own]).any()
    # every image now carries a square in another class's corner: the brightest corner patch is not its own
    corner_means = torch.stack([out.x[:, 0, 1:4, 1:4].mean((1, 2)), out.x[:, 0, 1:4, -4:-1].mean((1, 2))], 1)
    assert (corner_means.argmax(1) != data.val.y).float().mean() == 1.0


def test_train_records_every_protocol_from_the_same_run(one_torch_thread):
    data = datasets.triangles(n_train=40, seed=0, n_val=20, n_test=20, image_size=16, spurious_rate=0.9,
                              n_val_oracle=20)
    result = train(data, "standard", 0, epochs=3, quiet=True)
    p = result.protocols
    assert list(p) == ["train_like", "oracle", "explanation"]
    assert p["train_like"]["selected_epoch"] == result.metrics["selected_epoch"]
    assert p["train_like"]["metrics"]["test/acc"] == pytest.approx(result.metrics["test/acc"])
    last = train(data, "standard", 0, epochs=3, quiet=True, select="last")
    assert p["oracle"]["selected_epoch"] == 3
    assert p["oracle"]["metrics"]["test/acc"] == pytest.approx(last.metrics["test/acc"])
    assert last.protocols["train_like"]["metrics"]["test/acc"] == pytest.approx(result.metrics["test/acc"])
    val = {r["epoch"]: r["value"] for r in result.history if r["split"] == "val" and r["metric"] == "acc"}
    inter = {r["epoch"]: r["value"] for r in result.history if r["split"] == "val_intervened" and r["metric"] == "acc"}
    window = [e for e in (1, 2, 3) if val[e] >= max(val[k] for k in (1, 2, 3)) - DELTA]
    expected = min(window, key=lambda e: (val[e] - inter[e], -val[e], e))
    assert p["explanation"]["selected_epoch"] == expected
    assert p["explanation"]["metrics"]["val_intervened/acc"] == pytest.approx(inter[expected])
    assert "shortcut/reliance" in p["oracle"]["metrics"]
    plain = train(datasets.triangles(n_train=40, seed=0, n_val=20, n_test=20, image_size=16), "standard", 0,
                  epochs=1, quiet=True)
    assert list(plain.protocols) == ["train_like"]  # no val_oracle, no annotated shortcut


def test_an_epoch_exactly_delta_below_the_best_stays_in_the_window():
    import numpy as np

    t = Tracker("acc", explanation=True, oracle=False)
    f32 = lambda v: float(np.float32(v))  # noqa: E731 - accuracies are float32 means
    # 0.825 is exactly 0.02 below 0.845 (10 of 500 images), but 0.8249999881 < 0.8450000286 - 0.02 in floats
    feed(t, [(f32(0.825), f32(0.825) - 0.025), (f32(0.845), f32(0.845) - 0.615)])
    assert t.chosen()["explanation"]["selected_epoch"] == 1


def test_train_many_refuses_datasets_evaluated_on_different_splits():
    from explearn.errors import ConfigError
    from explearn.vectorized import train_many

    opts = dict(n_train=24, n_val=16, n_test=16, image_size=16, spurious_rate=0.9)
    a = datasets.triangles(seed=0, **opts)
    b = datasets.triangles(seed=1, spurious_train="absent", **opts)  # no square in validation: no intervention
    with pytest.raises(ConfigError, match="evaluated on different splits"):
        train_many([a, b], [0, 1], "standard", epochs=1, batch_size=8, models_at_once=2)
