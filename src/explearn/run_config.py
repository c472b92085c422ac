"""The one definition of a run's configuration (issue 15): ``TrainConfig``, everything that defines a training run
besides the data, and ``RunSpec``, a ``TrainConfig`` with the data that it trains on (dataset, its options, the
data seed), hashed into the run id under which sweeps store it.

Every field is written here once, with its default, its checks and its help. ``train`` and ``train_many`` take its
fields as keywords (or a whole ``TrainConfig``), the command line's ``train`` and ``fit`` generate their training
options from it (``cli``), the experiment specs take their defaults from it (``specs``), and a sweep's run carries
one (``RunSpec``; ``execution.execute_run`` trains it). This module imports neither torch nor the training code
(importing the ``explearn`` package does).

A new field is written here and read where training uses it (``train.py``, and the stacked loop of
``vectorized/trainer.py``, or ``train_many`` would ignore it): the keywords, the command line, the specs and the
sweeps take it from here. Note that it joins every run's identity (``RunSpec.config``), so stored
runs would be trained again: the tests pin the ids of stored runs (``tests/test_sweep.py``).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import numbers
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping

from explearn.config import check, check_seed, config_hash, from_dict, setting, to_dict
from explearn.errors import ConfigError

#: the ways to choose the epoch whose model a run keeps
SELECT = ("best_val", "best_val_balanced", "last")
#: which splits are evaluated after every epoch
CURVES = ("val", "all")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a run besides the data. ``hparams`` and ``model_options`` are checked against the
    method's and model's own settings classes when the run is built (``train``, ``RunSpec.create``).

    Raises (on construction):
        ConfigError: a seed out of range, a count that is not a positive integer, an unknown ``select`` or
            ``curves``, a negative ``attributions``.
    """

    method: str = setting("two_stage", "registered method (explearn list methods)")
    seed: int = setting(0, "run seed: model initialisation and data order (not the method: runs are paired)")
    hparams: Mapping[str, Any] = field(default_factory=dict, metadata={"help": "the method's settings"})
    model: str = setting("small_cnn", "registered model (explearn list models)")
    model_options: Mapping[str, Any] = field(default_factory=dict, metadata={"help": "the model's settings"})
    epochs: int = setting(30, "passes over the training data")
    batch_size: int = setting(32, "samples per step")
    select: Literal["best_val", "best_val_balanced", "last"] = setting(
        "best_val", "the epoch whose model is kept: best_val (validation accuracy, earliest on ties), "
                    "best_val_balanced (validation balanced accuracy, for imbalanced classes), last")
    device: str = setting("auto", "auto (CUDA if available, else CPU), cpu, cuda, cuda:1 ...; not part of a run's "
                                  "identity")
    curves: Literal["val", "all"] = setting(
        "val", "splits evaluated after every epoch: val (what selection reads) or all (for curves on test)")
    attributions: int = setting(0, "test images whose attribution maps are stored with the result")

    def __post_init__(self) -> None:
        for key in ("method", "model"):  # names; a network of your own goes to train(..., model=net) beside these
            check(isinstance(getattr(self, key), str), "train",
                  f"{key} must be a registered name (a string), got {type(getattr(self, key)).__name__}"
                  + ("; pass your own network as train(data, config, model=net)" if key == "model" else ""))
        for key in ("hparams", "model_options"):
            value = getattr(self, key)
            check(value is None or isinstance(value, Mapping), "train",
                  f"{key} must be a mapping of setting -> value (e.g. {{'lam': 10.0}}), got {value!r}")
            object.__setattr__(self, key, dict(value or {}))
        object.__setattr__(self, "seed", check_seed(self.seed, "train: run seed"))  # numpy integers become int
        for key in ("epochs", "batch_size", "attributions"):
            value = getattr(self, key)
            check(isinstance(value, numbers.Integral) and not isinstance(value, bool), "train",
                  f"{key} must be an integer, got {value!r}")
            object.__setattr__(self, key, int(value))
        check(self.epochs >= 1, "train", f"epochs must be >= 1, got {self.epochs}")
        check(self.batch_size >= 1, "train", f"batch_size must be >= 1, got {self.batch_size}")
        check(self.select in SELECT, "train", f"select must be 'best_val', 'best_val_balanced' or 'last', got "
                                              f"{self.select!r}")
        check(self.curves in CURVES, "train", f"curves must be 'all' or 'val', got {self.curves!r}")
        check(self.attributions >= 0, "train", f"attributions must be >= 0, got {self.attributions}")

    @classmethod
    def of(cls, method: Any = None, **options: Any) -> "TrainConfig":
        """A ``TrainConfig`` from keywords, each named once (unknown names are a ``ConfigError`` with the closest
        known ones); ``method`` may already be a whole ``TrainConfig`` (or a ``RunSpec``: its training part), and
        then no other keyword may be given."""
        if isinstance(method, TrainConfig):
            check(not options, "train", f"a TrainConfig was given, so {', '.join(sorted(options))} cannot be too")
            return method.training()
        if method is not None:
            options["method"] = method
        known = training_fields()
        for key in options:
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1)
                raise ConfigError(f"train: unknown setting {key!r}" + (f"; did you mean {close[0]!r}?" if close
                                                                        else f"; known: {', '.join(known)}"))
        return cls(**options)

    def training(self) -> "TrainConfig":
        """This configuration's training part, a plain ``TrainConfig`` (a ``RunSpec`` without its data)."""
        return self if type(self) is TrainConfig else TrainConfig(**{k: getattr(self, k) for k in training_fields()})


def training_fields() -> list[str]:
    """The names of ``TrainConfig``'s fields, in order."""
    return [f.name for f in dataclasses.fields(TrainConfig)]


def training_default(name: str) -> Any:
    """The default of one field of ``TrainConfig`` (``epochs`` -> 30)."""
    f = next(f for f in dataclasses.fields(TrainConfig) if f.name == name)
    return f.default_factory() if f.default is dataclasses.MISSING else f.default


#: the fields of TrainConfig that are no part of what a run is: where it trains
NOT_IDENTITY = ("device",)


@dataclass(frozen=True)
class RunSpec(TrainConfig):
    """Everything that determines one training run: a ``TrainConfig`` and the data it trains on. Build with
    ``RunSpec.create`` to fill in every default, so that equal runs get equal ids whether or not a default was
    spelled out. The id hashes ``config()``: every field but ``device``."""

    dataset: str = field(default="triangles", kw_only=True)
    data_options: Mapping[str, Any] = field(default_factory=dict, kw_only=True)
    data_seed: int = field(default=0, kw_only=True)

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "data_seed", check_seed(self.data_seed, "run: data seed"))

    @classmethod
    def create(cls, dataset: str, data_options: Mapping[str, Any], data_seed: int, method: str,
               hparams: Mapping[str, Any], model: str, model_options: Mapping[str, Any], seed: int, epochs: int,
               **train_options: Any) -> "RunSpec":
        """The run with every default of the dataset, the method and the model filled in (their settings classes
        check the values); ``train_options``: the other fields of ``TrainConfig``.

        Raises:
            ConfigError: an unknown dataset, method, model or setting, or a bad value.
        """
        from explearn.datasets import normalize_options
        from explearn.methods import METHODS
        from explearn.models import MODELS

        data = normalize_options(dataset, data_options)
        hp = to_dict(from_dict(METHODS.get(method).HParams, hparams, f"method {method!r}"))
        opts = to_dict(from_dict(MODELS.get(model)[1], model_options, f"model {model!r}"))
        cfg = TrainConfig.of(method, seed=seed, hparams=hp, model=model, model_options=opts, epochs=epochs,
                             **train_options)
        return cls(**{k: getattr(cfg, k) for k in training_fields()}, dataset=dataset, data_options=data,
                   data_seed=data_seed)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "RunSpec":
        """The run of a stored record's ``run`` entry (``config()`` as written)."""
        return cls(**config)

    def config(self) -> dict[str, Any]:
        """The run's identity as JSON-ready values: every field but ``device``."""
        record = {k: v for k, v in dataclasses.asdict(self).items() if k not in NOT_IDENTITY}
        return json.loads(json.dumps(record))

    @property
    def run_id(self) -> str:
        return config_hash(self.config(), length=16)
