"""The data option ``resample="oversample"`` (random oversampling, the known remedy for class imbalance)."""

import pytest
import torch

from explearn import datasets
from explearn.datasets.base import ExplanationDataset
from explearn.datasets.masks import oversample
from explearn.errors import ConfigError


def toy(counts: list[int]) -> ExplanationDataset:
    y = torch.cat([torch.full((n,), c) for c, n in enumerate(counts)])
    x = torch.arange(len(y), dtype=torch.float32).view(-1, 1, 1, 1).expand(-1, 1, 2, 2).clone()
    return ExplanationDataset(x, y, (x > 3).float(), torch.ones(len(y), dtype=torch.bool), len(counts))


def test_every_class_grows_to_the_largest_by_repeating_its_own_images():
    train = toy([7, 3, 2])  # class 1: 7 = 2 x 3 + 1; class 2: 7 = 3 x 2 + 1
    out = oversample(train, seed=0)
    assert out.class_counts() == [7, 7, 7] and len(out) == 21
    assert torch.equal(out.x[:12], train.x) and torch.equal(out.y[:12], train.y)  # the originals first, in order
    ids = out.x[:, 0, 0, 0].long()  # each image's value is its original index
    assert torch.equal(out.y, train.y[ids]) and torch.equal(out.mask, train.mask[ids])  # masks repeat with images
    per_image = torch.bincount(ids, minlength=12).tolist()
    assert per_image[:7] == [1] * 7  # the largest class is not resampled
    assert sorted(per_image[7:10]) == [2, 2, 3]  # floor(7 / 3) = 2 each, 7 mod 3 = 1 of them once more
    assert sorted(per_image[10:12]) == [3, 4]  # floor(7 / 2) = 3 each, 1 once more
    assert torch.equal(oversample(train, seed=0).x, out.x)  # the data seed decides which repeat once more
    assert any(not torch.equal(oversample(train, seed=s).x, out.x) for s in range(1, 10))


def test_balanced_data_are_unchanged_and_an_empty_class_stays_empty():
    train = toy([4, 4])
    assert torch.equal(oversample(train, 0).x, train.x)
    gap = ExplanationDataset(train.x, torch.tensor([0, 0, 0, 2, 2, 0, 0, 0]), train.mask, train.has_mask, 3)
    assert oversample(gap, 0).class_counts() == [6, 0, 6]


def test_the_option_on_a_dataset_and_its_run_identity():
    plain = datasets.load("triangles", seed=0, n_train=40, train_per_class=[30, 10], n_val=10, n_test=10,
                          image_size=16)
    over = datasets.load("triangles", seed=0, n_train=40, train_per_class=[30, 10], n_val=10, n_test=10,
                         image_size=16, resample="oversample")
    assert over.train.class_counts() == [30, 30] and torch.equal(over.train.x[:40], plain.train.x)
    assert torch.equal(over.val.x, plain.val.x) and torch.equal(over.test.x, plain.test.x)  # training only
    assert over.info["resample"] == "oversample" and "resample" not in plain.info
    # the option joins a run's identity only when it resamples: earlier runs keep their ids
    assert "resample" not in datasets.normalize_options("triangles", {"n_train": 40})
    assert datasets.normalize_options("triangles", {"resample": "oversample"})["resample"] == "oversample"
    with pytest.raises(ConfigError, match="resample"):
        datasets.load("triangles", seed=0, n_train=40, resample="undersample")


def test_the_minority_class_is_the_one_drawn_smallest():
    """newcomer finding: after oversampling every class is equal, yet minority_acc is about the class that was
    drawn smallest (the option records the drawn counts)."""
    from explearn.train import train

    data = datasets.load("triangles", seed=0, n_train=40, train_per_class=[30, 10], n_val=10, n_test=20,
                         image_size=16, resample="oversample")
    assert data.drawn_class_counts() == [30, 10] and data.train.class_counts() == [30, 30]
    result = train(data, "standard", seed=0, epochs=1, quiet=True)
    assert result.metrics["test/minority_acc"] == result.metrics["test/acc_class1"]


def test_fit_takes_the_options_of_every_dataset(tmp_path, capsys):
    """newcomer finding: `explearn fit DIR --data resample=oversample` was refused (it read the folder with the
    folder's own options only); the dataset's own function names where the option goes."""
    from explearn.checkpoint import load_checkpoint
    from explearn.cli import main
    from tests.field.image_folders import make_folder, write_csv

    root = make_folder(tmp_path / "f", n=12, split=False)
    write_csv(root, [{"image": f"img{k}", "label": "b" if k in (1, 3, 5) else "a"} for k in range(12)])  # 9 : 3
    out = tmp_path / "m.pt"
    assert main(["fit", str(root), "--data", "resample=oversample", "--epochs", "1", "--out", str(out)]) == 0
    drawn = datasets.load("folder", seed=0, root=str(root)).train.class_counts()
    assert drawn[0] > drawn[1]
    assert f"'train': {2 * drawn[0]}," in capsys.readouterr().out  # the training split fit used, oversampled
    assert "test/minority_acc" in load_checkpoint(out).metrics  # the class drawn smallest, b
    with pytest.raises(ConfigError, match=r"'resample' \(an option of every dataset loaded by name: "
                                          r"datasets.load\(NAME, ...\)"):
        datasets.load_folder(root, seed=0, resample="oversample")
