"""Every registered method works with any number of classes: 4-class triangles and a random 10-class dataset."""

import math

import pytest
import torch

from explearn import ExplanationDataset, Splits, datasets, train
from explearn.methods import METHODS


def random_splits(n_classes: int = 10, per_class: int = 3, size: int = 16) -> Splits:
    """Random images with a random box as the right reason; every other training sample also has a
    wrong-reason box, and a quarter of the training samples have no mask at all."""
    gen = torch.Generator().manual_seed(0)

    def split(n: int, name: str) -> ExplanationDataset:
        x = torch.rand(n, 1, size, size, generator=gen)
        y = torch.arange(n) % n_classes
        right = torch.zeros(n, 1, size, size)
        wrong = torch.zeros(n, 1, size, size)
        for i in range(n):
            r, c = torch.randint(0, size - 6, (2,), generator=gen).tolist()
            right[i, :, r:r + 6, c:c + 6] = 1
            wrong[i, :, :3, :3] = 1 - right[i, :, :3, :3]
        has_right = torch.arange(n) % 4 != 3
        has_wrong = (torch.arange(n) % 2 == 0) & has_right
        return ExplanationDataset(x, y, right, has_right, n_classes, None, name, wrong, has_wrong)

    n = n_classes * per_class
    return Splits(split(n, "train"), split(n, "val"), split(n, "test"))


SETS = {
    "triangles4": lambda: datasets.triangles(n_classes=4, n_train=24, seed=0, n_val=8, n_test=16, image_size=16),
    "random10": random_splits,
}


@pytest.fixture(scope="module", params=sorted(SETS))
def multiclass(request):
    return SETS[request.param]()


@pytest.mark.parametrize("method", METHODS.names())
def test_every_method_trains_on_more_than_two_classes(method, multiclass):
    k = multiclass.n_classes
    assert k > 2
    result = train(multiclass, method, seed=0, epochs=1, batch_size=8, quiet=True)
    with torch.no_grad():
        logits = result.model(multiclass.test.x)
    assert logits.shape == (len(multiclass.test), k)  # one output per class
    assert result.predictions["test"] == logits.argmax(1).tolist()
    for split in ("val", "test"):
        pred = torch.tensor(result.predictions[split])
        assert pred.min() >= 0 and pred.max() < k
        for key in ("acc", "balanced_acc", *(f"acc_class{c}" for c in range(k))):
            assert 0.0 <= result.metrics[f"{split}/{key}"] <= 1.0, key
        assert f"{split}/minority_acc" not in result.metrics  # balanced classes: no minority class (issue 12)
        assert f"{split}/acc_class{k}" not in result.metrics
        assert 0.0 <= result.metrics[f"{split}/align"] <= 1.0
    if bool(multiclass.test.has_wrong_mask.any()):
        assert 0.0 <= result.metrics["test/wrong_score"] <= 1.0
    train_logs = [r["value"] for r in result.history if r["split"] == "train"]
    assert train_logs and all(math.isfinite(v) for v in train_logs)
