"""Experiment specs: short declarative TOML files that expand into runs (setting x method x seed).

A folder of specs (``experiments/paper/``) may hold a ``_defaults.toml`` whose keys every spec inherits; a spec's
own keys win (tables are merged key by key, an empty table clears, everything else is replaced), and a preset
(``[presets.quick]``) is merged on top in the same way. The format is documented in ``experiments/README.md``.
Only ``_defaults.toml`` may also name the Dask scheduler the collection trains on (``cluster``; no spec key).
"""

from __future__ import annotations

import copy
import difflib
import itertools
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from explearn.config import check, check_seed
from explearn.errors import ConfigError
from explearn.run_config import training_default, training_fields

PRESETS = ("smoke", "quick", "full")
#: Top-level keys a spec may have, with their meaning (unknown keys are an error).
SPEC_KEYS = {
    "name": "short name, used for file names (default: the file's stem)",
    "title": "one-line description shown in the report",
    "claim": "what the paper claims for this experiment",
    "dataset": "registered dataset",
    "data": "dataset options shared by every setting",
    "model": "registered model",
    "model_options": "model options shared by every setting",
    "methods": "methods run in every setting",
    "baseline": "method the others are compared with (paired differences)",
    "hparams": "method -> fixed settings, for every setting",
    "grid": "option -> list of values; the settings are the product (nested tables hp.*, model.* for method and "
            "model settings)",
    "scenarios": "list of named base settings (label, data / hp / model tables), each combined with every grid "
                 "point and variant (e.g. the small-data and the spurious setting of an ablation study)",
    "variants": "list of settings, each with a label and data / hp / model tables and optionally methods",
    "registered": "'losses', 'normalizations' or 'masks': every registered alignment loss / normalisation / mask "
                  "transform that no variant uses joins as a variant of its own (so a newly registered one is "
                  "picked up by the study)",
    "reference": "label of the variant every other variant is compared with (paired by seed, per scenario and "
                 "grid point); the paper's own setting in an ablation study",
    "upper_bound": "label of the variant whose baseline runs are the upper-bound control (the same data without the "
                   "problem): the verdict table's headroom and share closed (docs/verdicts.md)",
    "primary": "the metric the verdict table decides on (default: the first headline metric)",
    "positive_controls": "labels of the variants whose methods are known remedies (the verdict table notes 'no "
                         "positive control worked' where none closes a share above 0)",
    "placebos": "placebo variant label -> label of the variant with the true masks: the verdict table compares each "
                "method run in both, true minus placebo",
    "report": "'together': one report for the whole collection; 'apart': OUT/<spec name>/ per spec (runs shared)",
    "label": "label of the single setting when there is neither grid nor variants",
    "data_seed": "'run' (data seed = run seed, so every seed is a new training set) or a fixed integer",
    "seeds": "number of evaluation run seeds (0, 1, ...)",
    "search_seeds": "number of seeds per candidate in the hyperparameter search (1000, 1001, ...)",
    "search": "method -> {setting -> list of values} searched on the validation split, per setting",
    "epochs": "training epochs",
    "batch_size": "samples per step",
    "curves": "'val': evaluate only the validation split after each epoch; 'all': every split (convergence)",
    "attributions": "number of test images whose attribution maps the first seed stores (for figures)",
    "headline": "metric, or list of metrics, reported in the summary; the first is compared with the paper",
    "paper": "setting label -> {method -> the paper's number for the first headline metric}",
    "paper_note": "a note on how the paper's numbers relate to ours",
    "source": "where the numbers in 'paper' come from when they are not Tao and Shokri's (other work's published "
              "figures, with their model and protocol)",
    "select": "model selection: best_val, best_val_balanced or last",
    "search_metric": "validation metric that chooses among search candidates (default val/acc)",
    "figures": "figures drawn for this experiment (accuracy_vs_size, convergence, agreement, examples)",
    "presets": "preset name -> keys that override the above",
}


@dataclass(frozen=True)
class Setting:
    """One point of an experiment: a label and the overrides it applies on top of the spec's base options."""

    label: str
    values: Mapping[str, Any]  # flat "n_train" / "hp.lr_ratio" / "model.mapping" -> value, for tables
    data: Mapping[str, Any] = field(default_factory=dict)
    hparams: Mapping[str, Any] = field(default_factory=dict)
    model_options: Mapping[str, Any] = field(default_factory=dict)
    methods: tuple[str, ...] | None = None
    point: str = ""  # the scenario and grid part of the label
    variant: str = ""  # the variant's label ("" without variants)


@dataclass(frozen=True)
class ExperimentSpec:
    """A spec resolved for one preset."""

    name: str
    preset: str
    raw: Mapping[str, Any]  # every key, after defaults and preset were merged
    settings: tuple[Setting, ...]
    path: str = ""

    def __getitem__(self, key: str) -> Any:
        return self.raw[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.raw.get(key, default)

    @property
    def methods(self) -> list[str]:
        return list(self.raw["methods"])

    @property
    def headline(self) -> list[str]:
        value = self.raw["headline"]
        return [value] if isinstance(value, str) else list(value)

    def methods_for(self, setting: Setting) -> list[str]:
        return list(setting.methods) if setting.methods is not None else self.methods

    def data_seed(self, run_seed: int) -> int:
        value = self.raw["data_seed"]
        return run_seed if value == "run" else int(value)


def load_spec(path: str | Path, preset: str = "quick") -> ExperimentSpec:
    """Read one spec file, merge the folder's ``_defaults.toml`` and the preset, and expand its settings.

    Raises:
        ConfigError: a missing file, a TOML syntax error, an unknown key (with suggestions) or preset, a method
            named twice, or a bad value: every value a run takes from the spec is checked here by the rules the
            runs apply (``_check_run_values``), so a bad one stops the sweep before it starts; the message names
            the file and the key.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"experiment spec not found: {path}")
    check(preset in PRESETS, str(path), f"unknown preset {preset!r}; presets are {', '.join(PRESETS)}")
    defaults_path = path.parent / "_defaults.toml"
    raw = _read(defaults_path) if defaults_path.is_file() and defaults_path != path else {}
    raw.pop("cluster", None)  # where the collection runs, not what a run is: never in a spec or a run id
    own = _read(path)
    check("cluster" not in own or path == defaults_path, str(path),
          "'cluster' (where runs train) belongs in the folder's _defaults.toml")
    own.pop("cluster", None)
    raw = _merge(raw, own)
    presets = raw.pop("presets", {})
    _check_keys(raw, str(path))
    if preset in presets:
        _check_keys(presets[preset], f"{path} [presets.{preset}]")
        raw = _merge(raw, presets[preset])
    raw.setdefault("name", path.stem)
    for key in training_fields():  # a run's, defined once; a spec names its methods, seeds and settings its own way
        if key not in ("method", "seed", "hparams", "model_options", "device"):
            raw.setdefault(key, training_default(key))
    for key, default in (("data", {}), ("model_options", {}), ("hparams", {}), ("search", {}), ("data_seed", "run"),
                         ("seeds", 1), ("search_seeds", 1), ("headline", "test/acc"), ("paper", {}),
                         ("baseline", None), ("reference", None), ("upper_bound", None), ("report", "together")):
        raw.setdefault(key, default)
    where = f"{path} (preset {preset})"
    check(isinstance(raw.get("methods"), list) and raw["methods"], where, "'methods' must be a non-empty list")
    _check_methods(raw["methods"], where, "methods")
    check(raw["data_seed"] == "run" or isinstance(raw["data_seed"], int), where,
          f"data_seed must be 'run' or an integer, got {raw['data_seed']!r}")
    if raw["data_seed"] != "run":
        check_seed(raw["data_seed"], f"{where}: data_seed")
    check(raw["curves"] in ("val", "all"), where, f"curves must be 'val' or 'all', got {raw['curves']!r}")
    for key in ("seeds", "search_seeds"):
        check(isinstance(raw[key], int) and not isinstance(raw[key], bool) and raw[key] >= 1, where,
              f"{key} must be a positive integer, got {raw[key]!r}")
    check(raw["baseline"] is None or raw["baseline"] in raw["methods"], where,
          f"baseline {raw['baseline']!r} is not one of the methods ({', '.join(map(str, raw['methods']))}), so "
          "nothing would be compared with it")
    check(raw["report"] in ("together", "apart"), where, f"report must be 'together' or 'apart', got {raw['report']!r}")
    settings, renamed = _settings(raw, where)
    if raw["reference"] is not None:
        variants = [v.get("label") for v in raw.get("variants") or []]
        close = difflib.get_close_matches(str(raw["reference"]), [str(v) for v in variants], n=1)
        check(raw["reference"] in variants, where, f"reference {raw['reference']!r} is not the label of a variant"
              + (f"; did you mean {close[0]!r}?" if close else f" (variants: {', '.join(map(str, variants))})"))
        raw["reference"] = renamed.get(raw["reference"], raw["reference"])  # the variant's label as shown
    if raw["upper_bound"] is not None:
        variants = {v.get("label"): v for v in raw.get("variants") or []}
        check(raw["reference"] is not None and raw["baseline"] is not None, where,
              "upper_bound needs a reference variant and a baseline: the lower bound is the baseline there")
        check(raw["upper_bound"] in variants, where, f"upper_bound {raw['upper_bound']!r} is not the label of a "
              f"variant (variants: {', '.join(map(str, variants))})")
        check(raw["baseline"] in (variants[raw["upper_bound"]].get("methods") or raw["methods"]), where,
              f"the upper_bound variant {raw['upper_bound']!r} must run the baseline {raw['baseline']!r}")
        raw["upper_bound"] = renamed.get(raw["upper_bound"], raw["upper_bound"])
    labels = [v.get("label") for v in raw.get("variants") or []]
    for label in raw.get("positive_controls") or []:
        check(label in labels, where, f"positive_controls: {label!r} is not the label of a variant "
              f"(variants: {', '.join(map(str, labels))})")
    raw["positive_controls"] = [renamed.get(v, v) for v in raw.get("positive_controls") or []]
    # a preset may run fewer variants: a pair whose placebo variant it leaves out is dropped; the full preset runs
    # them all, so a misspelt label is still refused there
    pairs = {k: v for k, v in (raw.get("placebos") or {}).items() if k in labels}
    check(preset != "full" or len(pairs) == len(raw.get("placebos") or {}), where,
          f"placebos: {sorted(set(raw.get('placebos') or {}) - set(pairs))} are not labels of variants "
          f"(variants: {', '.join(map(str, labels))})")
    for placebo, true in pairs.items():
        check(true in labels, where, f"placebos: {placebo!r} mirrors {true!r}, which is not the label of a variant "
              f"(variants: {', '.join(map(str, labels))})")
    raw["placebos"] = {renamed.get(k, k): renamed.get(v, v) for k, v in pairs.items()}
    spec = ExperimentSpec(raw["name"], preset, raw, settings, str(path))
    _check_run_values(spec, where)
    return spec


def _check_methods(methods: Any, where: str, key: str) -> None:
    """A list of method names, each once (a method named twice would train the same runs twice over, and the
    report would count them twice)."""
    check(isinstance(methods, list) and all(isinstance(m, str) for m in methods), where,
          f"{key} must be a list of method names, got {methods!r}")
    twice = sorted({m for m in methods if methods.count(m) > 1})
    check(not twice, where, f"{key} names {', '.join(map(repr, twice))} more than once; list each method once")


def _check_run_values(spec: ExperimentSpec, where: str) -> None:
    """Every value a run takes from ``spec``, checked by the rules the runs apply, so that a bad value stops
    ``load_spec`` (naming the file, the setting and the key) rather than failing every run of the sweep.

    The training values (epochs, batch_size, select, curves, attributions) go through ``TrainConfig``'s checks;
    the methods through the registry; the dataset, method and model settings of every setting, method and search
    candidate through ``planning.make_run`` (each settings class's ``from_dict`` and its own checks), as the
    sweep will build them.

    Raises:
        ConfigError: the first bad value.
    """
    from explearn.methods import METHODS
    from explearn.planning import check_settings, make_run, search_candidates
    from explearn.run_config import TrainConfig

    raw = spec.raw
    check(isinstance(raw.get("dataset"), str), where, "'dataset' must name a registered dataset (explearn list)")
    try:
        TrainConfig(epochs=raw["epochs"], batch_size=raw["batch_size"], select=raw["select"], curves=raw["curves"],
                    attributions=raw["attributions"])
    except ConfigError as err:
        raise ConfigError(f"{where}: {str(err).removeprefix('train: ')}") from None
    search = raw["search"]
    check(isinstance(search, Mapping) and all(isinstance(g, Mapping) for g in search.values()), where,
          "search must be a table of method -> {setting -> list of values}")
    for method, grid in search.items():
        for key, values in grid.items():
            check(isinstance(values, list) and values, where,
                  f"search.{method}.{key} must be a non-empty list of values, got {values!r}")
    for setting in spec.settings:
        for method in spec.methods_for(setting):
            try:
                METHODS.get(method)
            except ConfigError as err:
                raise ConfigError(f"{where}: setting {setting.label!r}: {err}") from None
    check_settings(spec)
    for setting in spec.settings:
        for method in spec.methods_for(setting):
            for cand in search_candidates(spec, setting, method):  # what the search and the evaluation runs take
                try:
                    make_run(spec, setting, method, 0, cand)
                except ConfigError as err:
                    raise ConfigError(f"{where}: setting {setting.label!r}, method {method!r}: {err}") from None


def load_specs(folder: str | Path, preset: str = "quick", only: list[str] | None = None) -> list[ExperimentSpec]:
    """Every spec in ``folder`` (files not starting with ``_``), in file-name order; ``only`` selects by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"experiment folder not found: {folder}")
    specs = [load_spec(p, preset) for p in sorted(folder.glob("*.toml")) if not p.name.startswith("_")]
    if not specs:
        raise ConfigError(f"no experiment specs (*.toml files not starting with '_') in {folder}")
    if only:
        names = [s.name for s in specs]
        for name in only:
            if name not in names:
                close = difflib.get_close_matches(name, names, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise ConfigError(f"no experiment {name!r} in {folder}{hint} (known: {', '.join(names)})")
        specs = [s for s in specs if s.name in only]
    return specs


def collection_cluster(folder: str | Path) -> str | None:
    """The Dask scheduler address a collection's ``_defaults.toml`` names (``cluster = "tcp://host:port"``), if
    any. It says where the collection's runs train, so it is no part of any spec, run configuration or run id."""
    path = Path(folder) / "_defaults.toml"
    value = _read(path).get("cluster") if path.is_file() else None
    check(value is None or isinstance(value, str), str(path), f"cluster must be an address string, got {value!r}")
    return value or None


def experiments_dir(name: str) -> Path:
    """The folder of the shipped experiment collection ``name`` (e.g. "paper").

    Looked up under ``$EXPLEARN_EXPERIMENTS``, then the specs shipped inside the package (``explearn/experiments``,
    package data; in a source checkout a link to the repository's ``experiments/``, resolved, so reports name
    ``experiments/paper``). A path to an existing folder of spec files (``*.toml``) is returned as it is; a folder
    without specs (such as the repository's ``benchmarks/`` scripts when the collection ``benchmarks`` is meant)
    is not.
    """
    if Path(name).is_dir() and any(Path(name).glob("*.toml")):
        return Path(name)
    roots = [Path(os.environ["EXPLEARN_EXPERIMENTS"])] if "EXPLEARN_EXPERIMENTS" in os.environ else []
    roots.append((Path(__file__).parent / "experiments").resolve())
    for root in roots:
        if (root / name).is_dir():
            return root / name
    raise ConfigError(f"no experiment collection {name!r} under {', '.join(map(str, roots))} "
                      "(set EXPLEARN_EXPERIMENTS or pass a folder of specs)")


# --- helpers ------------------------------------------------------------------------------------------------------


def _read(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML ({err})") from None


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(dict(base))
    for key, value in over.items():
        if isinstance(value, Mapping) and value and isinstance(out.get(key), Mapping):  # {} clears a table
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _check_keys(raw: Mapping[str, Any], where: str) -> None:
    for key in raw:
        if key not in SPEC_KEYS:
            close = difflib.get_close_matches(key, SPEC_KEYS, n=1, cutoff=0.5)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"{where}: unknown key {key!r}{hint}; known keys: {', '.join(SPEC_KEYS)}")


def _flatten(table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in table.items():
        if key in ("hp", "model") and not prefix and isinstance(value, Mapping):
            out.update(_flatten(value, f"{key}."))
        else:
            out[prefix + key] = value
    return out


def _split(values: Mapping[str, Any]) -> tuple[dict, dict, dict]:
    data, hp, model = {}, {}, {}
    for key, value in values.items():
        if key.startswith("hp."):
            hp[key[3:]] = value
        elif key.startswith("model."):
            model[key[6:]] = value
        else:
            data[key] = value
    return data, hp, model


def _format(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ":".join(_format(v) for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def registered_variants(kind: str, variants: list[Mapping[str, Any]], where: str) -> list[dict[str, Any]]:
    """A two-stage variant for every registered loss, normalisation or mask transform that none of ``variants``
    uses (the defaults, the paper's choices, count as used).

    A loss gets the softmax if it compares distributions (else no normalisation) and the first axis it allows; a
    normalisation gets KL where it yields distributions (else L2); a mask transform its default parameter.
    """
    from explearn.datasets.masks import MASK_TRANSFORMS
    from explearn.losses.alignment import DIVERGENCES, NORMALIZATIONS

    kinds = {"losses": ("hp", "loss", "kl", DIVERGENCES), "normalizations": ("hp", "normalization", "softmax", NORMALIZATIONS),
             "masks": ("data", "mask_transform", "none", MASK_TRANSFORMS)}
    check(kind in kinds, where, f"registered must be one of {', '.join(kinds)}, got {kind!r}")
    table, key, default, registry = kinds[kind]
    used = {default} | {v.get(table, {}).get(key) for v in variants}
    labels = {v.get("label") for v in variants}
    out = []
    for name in registry:
        if name in used or name in labels:
            continue
        if kind == "losses":
            div = registry.get(name)
            hp = {"loss": name, "normalization": "softmax" if div.needs_distribution else "none"}
            if div.axes is not None and "flat" not in div.axes:
                hp["axis"] = div.axes[0]
            out.append({"label": name, "hp": hp, "methods": ["two_stage"]})
        elif kind == "normalizations":
            probe = registry.get(name)(_probe())
            out.append({"label": name, "hp": {"normalization": name, "loss": "kl" if probe.is_distribution else "l2"},
                        "methods": ["two_stage"]})
        else:
            out.append({"label": name, "data": {"mask_transform": name}, "methods": ["two_stage"]})
    return out


def _probe():
    import torch

    return torch.zeros(1, 1, 2)


def _settings(raw: Mapping[str, Any], where: str) -> tuple[tuple[Setting, ...], dict[str, str]]:
    """The settings (scenario x grid point x variant), and each variant label that was rewritten to tell the truth
    (old -> new; see ``_true_label``)."""
    grid = _flatten(raw.get("grid", {}))
    for key, values in grid.items():
        check(isinstance(values, list) and values, where, f"grid entry {key!r} must be a non-empty list")
    points = [dict(zip(grid, combo)) for combo in itertools.product(*grid.values())] if grid else [{}]
    scenarios = raw.get("scenarios") or [{}]
    variants = list(raw.get("variants") or [])
    if raw.get("registered"):
        variants += registered_variants(raw["registered"], variants, where)
    variants = variants or [{}]
    for scenario in scenarios:  # the grid would silently replace the scenario's value
        own = set(_flatten({k: scenario[k] for k in ("hp", "model") if k in scenario})) | set(scenario.get("data", {}))
        clash = sorted(own & set(grid))
        check(not clash, where, f"scenario {scenario.get('label', '')!r} sets {', '.join(clash)}, which the grid "
              "varies, so the scenario's value would never be used; set it in one place")
    settings = []
    rewrites: dict[tuple[str, str], set[str]] = {}  # (kind of label part, as written) -> as shown
    for scenario, point, variant in itertools.product(scenarios, points, variants):
        for kind, table, keys in (("scenario", scenario, {"label", "data", "hp", "model"}),
                                  ("variant", variant, {"label", "data", "hp", "model", "methods"})):
            unknown = set(table) - keys
            check(not unknown, where, f"{kind} keys must be {', '.join(sorted(keys))}; got {sorted(unknown)}")
        values = {**_flatten({k: scenario[k] for k in ("hp", "model") if k in scenario}), **scenario.get("data", {}),
                  **point, **_flatten({k: variant[k] for k in ("hp", "model") if k in variant}),
                  **variant.get("data", {})}
        data, hp, model = _split(values)
        if "methods" in variant:
            _check_methods(variant["methods"], where, f"the methods of variant {variant.get('label', '')!r}")
        methods = tuple(variant["methods"]) if "methods" in variant else None
        in_use = _options_in_use(raw, data, hp, model, methods, where)

        def shown(kind: str, text: str, in_use: Callable[[str], dict[str, Any]] = in_use) -> str:
            true = _true_label(text, in_use, where)
            rewrites.setdefault((kind, text), set()).add(true)  # the same part must read the same everywhere
            return true

        # a variant that sets a grid key (an upper bound on a larger training set at every size of a size grid)
        # keeps the grid value as the name of its cell, as written; its own label states the value its runs use
        overridden = set(_flatten({k: variant[k] for k in ("hp", "model") if k in variant})) | set(variant.get("data", {}))
        for key in sorted(overridden & set(point)):
            bare = key.rpartition(".")[2]  # "lr_ratio" states hp.lr_ratio, as everywhere in labels
            stated = {m.group(2).rpartition(".")[2]
                      for m in map(_STATED.match, str(variant.get("label", "")).split(",")) if m}
            check(bare in stated, where, f"variant {variant.get('label', '')!r} sets the grid key {key!r} (to "
                  f"{_format(values[key])}), so its label must name it with the value its runs use, as a part "
                  f"'{bare}={_format(values[key])}' (words may follow in parentheses: "
                  f"'{bare}={_format(values[key])} (upper bound)'); the grid value '{key}={_format(point[key])}' "
                  "only names the cell")
        parts = ([shown("scenario label", scenario["label"])] if "label" in scenario else []) + [
            f"{k}={_format(v)}" if k in overridden else shown("grid value", f"{k}={_format(v)}")
            for k, v in point.items()]
        variant_label = shown("variant label", variant["label"]) if "label" in variant else ""
        label = ", ".join(parts + ([variant_label] if variant_label else [])) or \
            _true_label(raw.get("label", raw["name"]), in_use, where)
        settings.append(Setting(label, values, data, hp, model, methods, ", ".join(parts), variant_label))
    for (kind, text), true in rewrites.items():
        check(len(true) == 1, where, f"the {kind} {text!r} would say different things in different settings "
              f"({', '.join(sorted(true))}), since another part of the setting changes its value: leave the value "
              "out of the label, or set it where the label is")
    labels = [s.label for s in settings]
    check(len(set(labels)) == len(labels), where, f"settings need distinct labels, got {labels}")
    renamed = {text: next(iter(true)) for (kind, text), true in rewrites.items() if kind == "variant label"}
    return tuple(settings), renamed


# --- labels that say what ran -------------------------------------------------------------------------------------

#: a part of a setting label that states an option's value: "n_train=500", "hp.lr_ratio = 0.1", "mapping=conv1x1";
#: the value is the first token without spaces or parentheses, and what follows it ("n_train=5000 (upper bound)")
#: is kept as written
_STATED = re.compile(r"^(\s*)([A-Za-z_][\w.]*)(\s*=\s*)([^\s()]+)(.*)$")


def _true_label(text: str, in_use: Callable[[str], dict[str, Any]], where: str) -> str:
    """``text`` with each comma-separated part ``key=value`` whose key is an option of the dataset, of a method
    or of the model (``hp.`` / ``model.`` prefixes allowed) rewritten to the value the setting's runs use.

    Labels are written by hand, once for every preset, and a preset may change an option a label names (the
    ``smoke`` preset trains on 32 samples where a label says ``n_train=500``); the label is what the report shows,
    so it follows the runs. Other parts ("small data", "9:1", "eta2 = 10 eta1") are left as written, and so is
    whatever follows the value, which is the first token without spaces or parentheses ("n_train=5000 (upper
    bound)" rewrites only "5000").

    Raises:
        ConfigError: the part names an option that the search chooses, or that the setting's methods use with
            different values.
    """
    out = []
    for part in text.split(","):
        match = _STATED.match(part)
        used = in_use(match.group(2)) if match else {}
        if used and not all(_states(match.group(4), v) for v in used.values()):
            distinct = sorted({_format(v) for v in used.values()})
            check(len(distinct) == 1, where, f"label part {part.strip()!r} cannot be true for every run of its "
                  f"setting: {match.group(2)} is " + ", ".join(f"{_format(v)} ({who})" for who, v in used.items())
                  + "; leave it out of the label or give every method the same value")
            part = f"{match.group(1)}{match.group(2)}{match.group(3)}{distinct[0]}{match.group(5)}"
        out.append(part)
    return ",".join(out)


def _states(text: str, value: Any) -> bool:
    """Whether a label's value text states ``value`` (``10`` states 10.0, ``0.90`` states 0.9)."""
    if text == _format(value) or text.lower() == str(value).lower():
        return True
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return float(text) == float(value)
        except ValueError:
            return False
    return False


def _options_in_use(raw: Mapping[str, Any], data: Mapping[str, Any], hp: Mapping[str, Any],
                    model: Mapping[str, Any], methods: tuple[str, ...] | None,
                    where: str) -> Callable[[str], dict[str, Any]]:
    """A lookup: option key -> {"data" / method name / "model": the value the setting's runs use}, by the rules
    of ``explearn.planning.make_run`` (setting over spec over defaults; a method's settings only where it has
    them). Empty for a key that is no option. Built on the first call, so labels without ``key=value`` parts cost
    nothing and unknown names fail where the runs are made, with suggestions.

    Raises (on lookup):
        ConfigError: the key names a hyperparameter the search chooses among several values.
    """
    tables: dict[str, tuple[str, dict[str, Any], set[str]]] = {}  # owner -> (kind, values, searched keys)
    ignored: dict[str, str] = {}  # dataset options the other options make void -> why
    built: list[bool] = []

    def build() -> None:
        import dataclasses

        from explearn.datasets import DATASETS
        from explearn.datasets.masks import MaskOptions
        from explearn.methods import METHODS
        from explearn.models import MODELS
        from explearn.search import candidates

        def defaults(cls: type) -> dict[str, Any]:
            return {f.name: f.default for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING}

        def find(registry: Any, name: Any) -> Any:
            return registry.get(name) if isinstance(name, str) and name in registry else None

        if find(DATASETS, raw.get("dataset")):
            cls = DATASETS.get(raw["dataset"])[1]
            options = {**defaults(cls), **defaults(MaskOptions), **raw["data"], **data}
            tables["data"] = ("data", options, set())
            ignored.update(cls.ignored_options(options) if hasattr(cls, "ignored_options") else {})
        if find(MODELS, raw["model"]):
            tables["model"] = ("model", {**defaults(MODELS.get(raw["model"])[1]), **raw["model_options"], **model},
                               set())
        for method in methods if methods is not None else raw["methods"]:
            if not find(METHODS, method):
                continue
            own = defaults(METHODS.get(method).HParams)
            fixed = {k: v for k, v in hp.items() if k in own}
            values = {**own, **raw["hparams"].get(method, {}), **fixed}
            grid = raw["search"].get(method, {})
            searched = set()
            if len(candidates(grid, fixed)) > 1:  # with one candidate the search does not run: defaults are used
                for key in (k for k in grid if k not in fixed):
                    if len(grid[key]) == 1:
                        values[key] = grid[key][0]
                    else:
                        searched.add(key)
            tables[method] = ("hp", values, searched)

    def lookup(key: str) -> dict[str, Any]:
        if not built:
            build()
            built.append(True)
        space, _, name = key.rpartition(".")
        check(not (space in ("", "data") and name in ignored), where,
              f"a label names {key}, which the setting's runs ignore ({ignored.get(name)}); leave it out of the label")
        found = {}
        for owner, (kind, values, searched) in tables.items():
            if name in values and space in ("", kind):
                check(name not in searched, where, f"a label names {key}, which the search chooses for {owner}, so "
                      "no label can say its value; leave it out of the label or fix it in the setting (hp table)")
                found[owner] = values[name]
        return found

    return lookup
