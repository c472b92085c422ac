"""From experiment specs to runs: the hyperparameter-search runs of every setting and method, and, once the
search has chosen, the evaluation runs (``explearn.reproduce`` runs them; ``explearn.specs`` checks every value a
run takes by building them here)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from explearn.search import candidate_key, candidates
from explearn.selection import PROTOCOLS
from explearn.run_config import RunSpec

if TYPE_CHECKING:  # specs reads its values through these functions: no import back
    from explearn.specs import ExperimentSpec, Setting

SEARCH_SEED_OFFSET = 1000  # search seeds are 1000, 1001, ...: never the evaluation seeds


@dataclass(frozen=True)
class Planned:
    """A run and where it belongs."""

    experiment: str
    setting: str
    method: str
    seed: int
    role: str  # "search", "eval" (the train-like choice) or "protocol" (another protocol's choice only)
    candidate: str
    run: RunSpec
    protocols: tuple[str, ...] = ()  # evaluation runs: the selection protocols whose choice this candidate is

    def entry(self) -> dict[str, Any]:
        out = {"experiment": self.experiment, "setting": self.setting, "method": self.method, "seed": self.seed,
               "role": self.role, "candidate": self.candidate, "run_id": self.run.run_id}
        if self.protocols:
            out["protocols"] = list(self.protocols)
        return out


def make_run(spec: ExperimentSpec, setting: Setting, method: str, seed: int, extra_hp: dict[str, Any],
             search: bool = False, attributions: int = 0) -> RunSpec:
    """The run of ``method`` in ``setting`` with run seed ``seed``.

    Evaluation runs take the data seed by the spec's rule and its ``curves``. Search runs always draw their own
    training set (data seed = search seed) and evaluate only the validation split per epoch, so that specs whose
    settings agree share one search.
    """
    hparams = {**spec["hparams"].get(method, {}), **_applicable(setting.hparams, method), **extra_hp}
    return RunSpec.create(
        spec["dataset"], {**spec["data"], **setting.data}, seed if search else spec.data_seed(seed), method, hparams,
        spec["model"], {**spec["model_options"], **setting.model_options}, seed, spec["epochs"],
        batch_size=spec["batch_size"], select=spec["select"], curves="val" if search else spec["curves"],
        attributions=attributions,
    )


def _applicable(hparams: dict[str, Any], method: str) -> dict[str, Any]:
    """The setting's method settings that ``method`` has (a setting may tune e.g. the two-stage method's axis
    while label-only training runs unchanged beside it)."""
    import dataclasses

    from explearn.methods import METHODS

    names = {f.name for f in dataclasses.fields(METHODS.get(method).HParams)}
    return {k: v for k, v in hparams.items() if k in names}


def search_candidates(spec: ExperimentSpec, setting: Setting, method: str) -> list[dict[str, Any]]:
    """The candidates of ``method``'s search grid in ``setting`` (keys the setting fixes are not searched); one
    candidate (possibly ``{}``, the defaults) means no search."""
    return candidates(spec["search"].get(method, {}), _applicable(setting.hparams, method))


def check_settings(spec: ExperimentSpec) -> None:
    """Every method setting of every setting belongs to at least one of its methods (typos are errors)."""
    import dataclasses

    from explearn.errors import ConfigError
    from explearn.methods import METHODS

    for setting in spec.settings:
        methods = spec.methods_for(setting)
        known = {f.name for m in methods for f in dataclasses.fields(METHODS.get(m).HParams)}
        for key in setting.hparams:
            if key not in known:
                raise ConfigError(f"{spec.path}: setting {setting.label!r} sets hp.{key}, which none of "
                                  f"{', '.join(methods)} has")


def plan_search(spec: ExperimentSpec) -> list[Planned]:
    """Search runs: every candidate of each method's grid on each search seed, per setting (none for a method
    with at most one candidate)."""
    plan = []
    check_settings(spec)
    for setting in spec.settings:
        for method in spec.methods_for(setting):
            options = search_candidates(spec, setting, method)
            if len(options) < 2:
                continue
            for cand in options:
                for k in range(spec["search_seeds"]):
                    seed = SEARCH_SEED_OFFSET + k
                    plan.append(Planned(spec.name, setting.label, method, seed, "search", candidate_key(cand),
                                        make_run(spec, setting, method, seed, cand, search=True)))
    return plan


def plan_eval(spec: ExperimentSpec, chosen: dict) -> list[Planned]:
    """Evaluation runs: every method of every setting on seeds 0..seeds-1 with the chosen hyperparameters (a
    grid of a single candidate is not searched: that candidate is used). A candidate that only another selection
    protocol chose (``choose_all``) gets its own evaluation runs, role ``protocol``; each run's entry lists the
    protocols whose choice it is."""
    plan = []
    for setting in spec.settings:
        for method in spec.methods_for(setting):
            cand = chosen.get((spec.name, setting.label, method))
            if cand is None:
                options = search_candidates(spec, setting, method)
                cand = candidate_key(options[0]) if len(options) == 1 else "{}"
            by_protocol = {"train_like": cand}
            for protocol in PROTOCOLS[1:]:
                other = chosen.get((spec.name, setting.label, method, protocol))
                if other is not None:
                    by_protocol[protocol] = other
            for key in dict.fromkeys(by_protocol.values()):
                protocols = tuple(p for p, c in by_protocol.items() if c == key)
                role = "eval" if key == cand else "protocol"
                for seed in range(spec["seeds"]):
                    run = make_run(spec, setting, method, seed, json.loads(key),
                                   attributions=spec["attributions"] if seed == 0 and role == "eval" else 0)
                    plan.append(Planned(spec.name, setting.label, method, seed, role, key, run,
                                        protocols if len(by_protocol) > 1 else ()))
    return plan
