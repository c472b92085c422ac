"""The ``explearn`` command: a thin layer that parses arguments, calls library functions and prints."""

from __future__ import annotations

import argparse
import csv
import os
import sys
from typing import Sequence

from explearn.config import check_seed, fields_help, parse_assignments
from explearn.errors import ConfigError, DataError
from explearn.files import atomic_write
from explearn.run_config import training_fields


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # a mistyped option: said by the command's own parser, with the closest options it has
        _unrecognized(parser, list(sys.argv[1:] if argv is None else argv), extra)
    args.argv = None if argv is None else list(argv)  # what was typed (fit tells given options from defaults)
    if not hasattr(args, "run"):
        parser.print_help()
        return 2
    try:
        if hasattr(args, "threads"):
            from explearn.threads import use_threads

            args.threads = use_threads(args.threads)
        return args.run(args)
    except KeyboardInterrupt as stop:  # Ctrl-C: what was stored is said in one line, not a traceback
        detail = f": {stop.args[0]}" if stop.args else ""
        print(f"explearn: interrupted{detail}", file=sys.stderr)
        return INTERRUPTED
    except BrokenPipeError:  # `explearn predict ... | head`: the reader left; no message, as other Unix tools
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so that the exit flush does not fail again
        return 1
    except (ConfigError, DataError, OSError) as err:  # OSError: a path the user gave (missing, a folder, no access)
        print(f"explearn: error: {err}", file=sys.stderr)
        return 2


#: the exit code of a command stopped by Ctrl-C (SIGINT), as shells report it: 128 + 2
INTERRUPTED = 130


def _unrecognized(parser: argparse.ArgumentParser, argv: list[str], extra: list[str]) -> None:
    """Exit as argparse does (status 2), naming each unknown argument and the closest option of the command."""
    import difflib

    commands = parser._explearn_commands  # type: ignore[attr-defined]
    command = next((a for a in argv if a in commands), None)
    target = commands.get(command, parser)
    known = [s for action in target._actions for s in action.option_strings]
    parts = []
    for word in extra:
        close = difflib.get_close_matches(word.split("=")[0], known, n=1) if word.startswith("-") else []
        parts.append(f"{word} (did you mean {close[0]}?)" if close else word)
    target.error(f"unrecognized arguments: {' '.join(parts)}")


def _seed(text: str) -> int:
    """argparse type of --seed and --data-seed: an integer from 0 to 2^63 - 1 (``config.check_seed``)."""
    try:
        return check_seed(int(text), "seed")
    except (ValueError, ConfigError):
        raise argparse.ArgumentTypeError(f"a seed must be an integer from 0 to 2^63 - 1, got {text!r}") from None


def _count(text: str) -> int:
    """argparse type of counts where 0 means none (--workers): an integer >= 0."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def _path(text: str) -> str:
    """argparse type of every path and name the user types: not empty (an empty string would silently mean the
    current folder, or nothing)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return text


class _NoAbbreviations(argparse.ArgumentParser):
    """A command's parser: options are spelled out (``--epoch`` is not taken for ``--epochs``)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, allow_abbrev=False, **kwargs)


class _LineHelpFormatter(argparse.HelpFormatter):
    """Help text whose lines, where it has several, are wrapped one by one (a list of choices, one a line)."""

    def _split_lines(self, text: str, width: int) -> list[str]:
        split = super()._split_lines  # not inside the comprehension: zero-argument super() needs this frame
        return [wrapped for line in text.split("\n") for wrapped in split(line, width)]


#: what ``explain --attribution`` draws for the attributions it had before the captum ones (unchanged)
_EXPLAIN_ATTRIBUTIONS = {
    "input_gradient": "|d log p_predicted / dx| summed over channels (the attribution of the align metric)",
    "gradcam": "Grad-CAM on the mapped features, upsampled",
}


def _attribution_names() -> list[str]:
    """The names ``explain --attribution`` takes: input_gradient, gradcam, then captum's others (alphabetical)."""
    from explearn.explain.captum_attributions import EVALUATION_ATTRIBUTIONS

    return [*_EXPLAIN_ATTRIBUTIONS, *(n for n in EVALUATION_ATTRIBUTIONS.names() if n not in _EXPLAIN_ATTRIBUTIONS)]


def _attribution_help() -> str:
    """``explain --attribution``'s help: one line per attribution."""
    from explearn.explain.captum_attributions import attribution_summary

    lines = [f"{name}: {_EXPLAIN_ATTRIBUTIONS.get(name) or attribution_summary(name)}"
             for name in _attribution_names()]
    return ("the attribution of the predicted class drawn (default input_gradient); signed ones are drawn as their "
            "absolute value summed over channels:\n" + "\n".join(lines)).replace("%", "%%")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        allow_abbrev=False,
        prog="explearn",
        description="Train classifiers from labels plus explanation masks (Tao and Shokri, arXiv 2507.04788).",
    )
    from explearn.version import __version__

    parser.add_argument("--version", action="version", version=f"explearn {__version__}")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND", parser_class=_NoAbbreviations)
    parser._explearn_commands = sub.choices  # type: ignore[attr-defined]  # name -> the command's parser

    p = sub.add_parser("list", help="list datasets, mask transforms, methods, alignment losses, normalisations, models, "
                                    "mapping layers, evaluation attributions",
                       description="List what is registered, with every setting, its default and its meaning.")
    p.add_argument("what", nargs="?", default="all",
                   choices=["all", "datasets", "masks", "methods", "losses", "models", "mappings", "attributions"],
                   help="what to list")
    p.set_defaults(run=_cmd_list)

    p = sub.add_parser("train", help="train one model and write a JSON result",
                       description="Train one method on one dataset; writes OUT/result.json with the full config, "
                                   "per-epoch metrics and final metrics, and prints a summary.")
    p.add_argument("--dataset", default="triangles", help="registered dataset (explearn list datasets)")
    p.add_argument("--data-seed", type=_seed, default=0, help="data seed: the dataset and its splits (default 0)")
    p.add_argument("--out", type=_path, default=None, help="output directory for result.json (default: print only)")
    p.add_argument("--data", action="append", metavar="KEY=VALUE", help="a dataset option, e.g. --data n_train=200")
    _training_arguments(p)
    p.set_defaults(run=_cmd_train)

    p = sub.add_parser("fit", help="train on a folder of images with labels and masks; save a checkpoint",
                       description="Train one method on a folder dataset (DATA_DIR/labels.csv, images/, masks/; see "
                                   "docs/user-guide.md, 'Your own images'), select the epoch on the validation split "
                                   "and save a checkpoint holding the weights, the config, the class names and the "
                                   "preprocessing. Every problem in the folder is reported before training starts.")
    p.add_argument("data_dir", type=_path, metavar="DATA_DIR", help="the dataset folder")
    p.add_argument("--backbone", type=_path, default=None, metavar="MODULE:FUNCTION",
                   help="your own network instead of --model: FUNCTION(n_classes) returns an nn.Module from images "
                        "to logits (the current folder is importable); needs --feature-layer")
    p.add_argument("--feature-layer", type=_path, default=None, metavar="NAME",
                   help="with --backbone: the submodule where f ends (a name from named_modules(), e.g. layer3); "
                        "the mapping layer (conv1x1) is inserted after it")
    p.add_argument("--backbone-output", default=None, metavar="INDEX|KEY",
                   help="with --backbone, for a network that returns more than logits (a tuple, a dict, a Hugging "
                        "Face output): the index (0) or key/attribute (logits) of the logits")
    p.add_argument("--out", type=_path, default="model.pt", help="checkpoint file to write (default model.pt)")
    p.add_argument("--image-size", default=None, metavar="HxW",
                   help="resize every image and mask to H x W pixels (e.g. 96x128, or 64 for 64x64); default: keep "
                        "the files' size (they must then all share one)")
    p.add_argument("--data-seed", type=_seed, default=0,
                   help="data seed: the train/val/test split when labels.csv has no split column (default 0)")
    p.add_argument("--data", action="append", metavar="KEY=VALUE",
                   help="a folder option, e.g. --data normalize=imagenet --data val_fraction=0.25")
    # photos: a residual network, and the epoch chosen by balanced accuracy (robust to imbalanced classes); a
    # checkpoint keeps neither curves nor attribution examples, so fit offers no option for them
    _training_arguments(p, exclude=("curves", "attributions"), model="small_resnet", select="best_val_balanced")
    p.set_defaults(run=_cmd_fit)

    p = sub.add_parser("predict", help="predicted labels and class probabilities of images, as CSV",
                       description="Load a checkpoint written by `explearn fit` (weights-only: no code in the file "
                                   "is executed), preprocess each image as in training and print or write "
                                   "image,label,prob_<class>... as CSV.")
    _checkpoint_arguments(p)
    p.add_argument("--out", type=_path, default=None, help="CSV file to write (default: print to standard output)")
    p.set_defaults(run=_cmd_predict)

    p = sub.add_parser("explain", help="attribution overlays of images as PNG, with the mask when there is one",
                       description="For each image write an overlay PNG into OUT: the image and the attribution "
                                   "of the predicted class over it, the explanation mask outlined where one is found "
                                   "(--masks DIR/<stem>.png, else the folder layout's ../masks/<stem>.png), and "
                                   "OUT/explanations.csv with the prediction and the share of attribution inside "
                                   "the mask. Overlays mirror the images' paths below their common folder (a/x.jpg "
                                   "-> OUT/a/x.png). OUT must not be or hold a folder of the images or masks; only "
                                   "files of an earlier explain into OUT are replaced.")
    _checkpoint_arguments(p)
    p.add_argument("--out", type=_path, required=True, help="folder for the overlays")
    p.add_argument("--masks", type=_path, default=None,
                   help="folder of masks (<stem>.png); default: ../masks beside the images")
    p.add_argument("--attribution", default="input_gradient", choices=_attribution_names(),
                   help=_attribution_help())
    p.formatter_class = _LineHelpFormatter  # --attribution's help: one line per attribution
    p.set_defaults(run=_cmd_explain)

    p = sub.add_parser("reproduce", help="run a collection of experiment specs end to end and write a report",
                       description="Run every spec of a collection (the paper's experiments: 'paper'; the ablation "
                                   "studies: 'ablations') at a preset: hyperparameter search on validation, then the "
                                   "evaluation runs, then the report. Resumable: finished runs in OUT/runs are "
                                   "reused.")
    p.add_argument("collection", type=_path,
                   help="'paper', 'ablations' (folders of experiments/) or a folder of spec files")
    p.add_argument("--preset", default="quick", choices=["smoke", "quick", "full"],
                   help="smoke: seconds; quick: minutes; full: the paper's scale (default quick)")
    p.add_argument("--out", type=_path, default=None, help="report folder (default reports/COLLECTION)")
    p.add_argument("--only", "--study", type=_path, dest="only", action="append", metavar="NAME",
                   help="run only this spec / study (repeatable)")
    p.add_argument("--workers", type=_count, default=None, help="worker processes (default: one per core; 0: none)")
    p.add_argument("--cluster", type=_path, default=None, metavar="ADDRESS",
                   help="train on the Dask scheduler at ADDRESS (tcp://HOST:PORT) instead of local worker processes; "
                        "default: $EXPLEARN_CLUSTER, else the collection's _defaults.toml 'cluster' entry, else local "
                        "('local' forces local processes)")
    p.set_defaults(run=_cmd_reproduce)

    p = sub.add_parser("bench", help="where the time goes: throughput per method, seeds sequential vs vectorised, "
                                     "RRR against a peer's loop, share of a run spent training, FLOP/s, preset "
                                     "wall times",
                       description="Measure training samples per second of each method on the triangle and "
                                   "Decoy-MNIST workloads (Decoy-MNIST needs $EXPLEARN_DATA), each method's time and "
                                   "FLOP ratio to standard (paired, interleaved in one process), explearn's RRR "
                                   "against a re-implementation of the XIL typology code's RRR loop, the share of a "
                                   "default run spent training, models per minute for S = 1, 10, 30 seeds sequential "
                                   "vs vectorised, achieved FLOP/s against the measured sgemm peak, how busy the "
                                   "machine was meanwhile, and reproduction preset wall times. Prints a Markdown "
                                   "table and appends it to the benchmark log.")
    p.add_argument("--quick", action="store_true", help="fewer methods, epochs and repeats: a few minutes")
    p.add_argument("--json", type=_path, default=None, metavar="PATH", help="also write the figures as JSON")
    p.add_argument("--log", type=_path, default=None, metavar="PATH",
                   help="the Markdown log to append to (default: benchmarks/LOG.md of the repository)")
    _threads_argument(p)
    p.set_defaults(run=_cmd_bench)

    p = sub.add_parser("report", help="re-render a report from its stored runs, without training",
                       description="Re-render summary.md, results.csv, search.csv and the figures of a report folder "
                                   "written by `explearn reproduce`, from its manifest and stored runs; a folder "
                                   "of studies (reports/ablations) re-renders each study.")
    p.add_argument("dir", type=_path, help="the report folder (holds manifest.json), or a folder of such folders")
    p.set_defaults(run=_cmd_report)
    return parser


#: the fields of ``TrainConfig`` that are command-line options of train and fit as they are (--batch-size ...):
#: all but hparams and model_options, which come as --hp KEY=VALUE and --model-opt KEY=VALUE
OPTIONS = tuple(name for name in training_fields() if name not in ("hparams", "model_options"))


def _training_arguments(p: argparse.ArgumentParser, exclude: tuple[str, ...] = (), **defaults: object) -> None:
    """The arguments of the commands that train one model (train, fit), generated from ``TrainConfig``'s fields,
    defaults and help (``defaults`` replaces a default for one command; ``exclude``: fields the command does not
    offer); ``_training_options`` reads them."""
    import dataclasses
    import typing

    from explearn.run_config import TrainConfig, training_default

    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    hints = typing.get_type_hints(TrainConfig)
    for name in (n for n in OPTIONS if n not in exclude):
        default = defaults.get(name, training_default(name))
        kwargs: dict = {"default": default, "help": f"{fields[name].metadata['help']} (default {default})"}
        if name == "seed":
            kwargs["type"] = _seed
        elif hints[name] is int:
            kwargs["type"] = int
        elif typing.get_origin(hints[name]) is typing.Literal:
            kwargs["choices"] = list(typing.get_args(hints[name]))
        p.add_argument(f"--{name.replace('_', '-')}", **kwargs)
    p.add_argument("--hp", action="append", metavar="KEY=VALUE", help="a method setting, e.g. --hp lr_ratio=10")
    p.add_argument("--model-opt", action="append", metavar="KEY=VALUE",
                   help="a model option, e.g. --model-opt mapping=conv1x1")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _threads_argument(p)


def _threads_argument(p: argparse.ArgumentParser) -> None:
    """--threads of the commands that compute in this one process (train, fit, predict, explain, bench); ``main``
    applies it before the command runs (``explearn.threads``)."""
    p.add_argument("--threads", default=None, metavar="N|auto",
                   help="torch threads: auto (default; also $EXPLEARN_THREADS) uses the cores other processes leave "
                        "free when the command starts, N uses N (docs/performance.md, 'Threads')")


def _training_options(args: argparse.Namespace) -> dict:
    """``train``'s keyword arguments from ``_training_arguments`` but method, seed and model (given apart)."""
    return {**{name: getattr(args, name) for name in OPTIONS
               if name not in ("method", "seed", "model") and hasattr(args, name)},
            "hparams": parse_assignments(args.hp, "--hp"),
            "model_options": parse_assignments(args.model_opt, "--model-opt"), "quiet": args.quiet}


def _checkpoint_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of the commands that use a checkpoint on image files (predict, explain)."""
    p.add_argument("checkpoint", type=_path, metavar="CHECKPOINT", help="a checkpoint file")
    p.add_argument("images", type=_path, metavar="IMAGES", nargs="+", help="image files or folders of images")
    p.add_argument("--backbone", type=_path, default=None, metavar="MODULE:FUNCTION",
                   help="for a checkpoint trained with `fit --backbone`: the same function, to rebuild the network")
    _threads_argument(p)


def _cmd_list(args: argparse.Namespace) -> int:
    from explearn.datasets import DATASETS, MASK_TRANSFORMS, MaskOptions
    from explearn.losses import DIVERGENCES, NORMALIZATIONS, AXES
    from explearn.methods import METHODS
    from explearn.models import MAPPINGS, MODELS

    what = args.what
    if what in ("all", "datasets"):
        _section("datasets", {name: DATASETS.get(name)[1] for name in DATASETS}, DATASETS)
    if what in ("all", "datasets", "masks"):
        _section("options of every dataset: training masks and resampling (--data KEY=VALUE)", {"": MaskOptions}, None)
        print("mask transforms (--data mask_transform=NAME --data mask_param=VALUE; training masks only):")
        for name in MASK_TRANSFORMS:
            t = MASK_TRANSFORMS.get(name)
            param = f" [mask_param: {t.param}, default {t.default:g}]" if t.param != "unused" else ""
            print(f"  {name:12s} {t.description}{param}")
        print()
    if what in ("all", "methods"):
        _section("methods", {name: METHODS.get(name).HParams for name in METHODS}, METHODS, doc_of=METHODS.get)
    if what in ("all", "losses"):
        print("alignment losses (--hp loss=NAME):")
        for name in DIVERGENCES:
            print(f"  {name:12s} {DIVERGENCES.get(name).description}")
        print("normalisations (--hp normalization=NAME):")
        for name in NORMALIZATIONS:
            print(f"  {name:12s} {_first_line(NORMALIZATIONS.get(name).__doc__)}")
        print("feature axes (--hp axis=NAME):")
        for name in AXES:
            print(f"  {name:12s} {_first_line(AXES.get(name).__doc__)}")
        print()
    if what in ("all", "models"):
        _section("models", {name: MODELS.get(name)[1] for name in MODELS}, MODELS)
    if what in ("all", "mappings", "models"):
        print("mapping layers (--model-opt mapping=NAME):")
        for name in MAPPINGS:
            print(f"  {name:12s} {_first_line(MAPPINGS.get(name).__doc__)}")
    if what in ("all", "attributions"):
        from explearn.explain.captum_attributions import EVALUATION_ATTRIBUTIONS, attribution_summary

        print("evaluation attributions (explearn explain --attribution NAME; explain.alignment_under):")
        for name in EVALUATION_ATTRIBUTIONS:
            print(f"  {name:22s} {attribution_summary(name)}")
    return 0


def _section(title: str, settings: dict, registry, doc_of=None) -> None:
    print(f"{title}:")
    for name, cls in settings.items():
        doc = _first_line(doc_of(name).__doc__) if doc_of else ""
        if name:
            print(f"  {name}" + (f"  - {doc}" if doc else ""))
        for field, type_name, default, help_text in fields_help(cls):
            print(f"      {field} = {default!r}  ({type_name})  {help_text}")
    print()


def _first_line(doc: str | None) -> str:
    return " ".join((doc or "").strip().split("\n\n")[0].split())


def _cmd_train(args: argparse.Namespace) -> int:
    from pathlib import Path

    from explearn.datasets import load
    from explearn.outputs import check_output_folder, json_with
    from explearn.train import resolve_device, train

    resolve_device(args.device)  # a device this machine lacks is reported before any data are made
    if args.out:
        check_output_folder(args.out, "--out", targets=[Path(args.out) / "result.json"],
                            ours=json_with("config", "metrics"), what="a result.json written by `explearn train`")
    data = load(args.dataset, seed=args.data_seed, **_data_options(args.data, {"seed": "--data-seed N"}))
    result = train(data, args.method, args.seed, model=args.model, **_training_options(args))
    m = result.metrics
    print(f"{args.method} on {args.dataset} (data seed {args.data_seed}, run seed {args.seed}), "
          f"epoch {m['selected_epoch']} selected ({args.select}):")
    keys = ["acc", "balanced_acc", "minority_acc", "align"]  # minority_acc only exists for imbalanced classes
    for split in [s for s in ("val", "test", *sorted(data.extra)) if f"{s}/acc" in m]:
        print(f"  {split:14s} " + "  ".join(f"{k} {m[f'{split}/{k}']:.3f}" for k in keys if f"{split}/{k}" in m))
    if "shortcut/reliance" in m:
        print(f"  shortcut       reliance {m['shortcut/reliance']:+.3f}  worst-group acc "
              f"{m['shortcut/worst_group_acc']:.3f}")
    _print_protocols(result.protocols)
    print(f"  {m['time/epoch_s']:.2f} s per training epoch, {m['time/total_s']:.1f} s in all with evaluation, "
          f"on {result.config['device']}, {args.threads} torch thread{'s' if args.threads != 1 else ''}")
    if args.out:
        print(f"wrote {result.save(args.out)}")
    return 0


def _print_protocols(protocols: dict) -> None:
    """One line per selection protocol beyond train_like: its epoch and test accuracy (and reliance)."""
    if len(protocols) < 2:
        return
    parts = []
    for name, p in protocols.items():
        text = f"{name} epoch {p['selected_epoch']}: test acc {p['metrics']['test/acc']:.3f}"
        if "shortcut/reliance" in p["metrics"]:
            text += f", reliance {p['metrics']['shortcut/reliance']:+.3f}"
        if (p["tied_epochs"] or 0) > 1:
            text += f" ({p['tied_epochs']} epochs tied)"
        parts.append(text)
    print("  selection protocols (docs/design.md, 'Selection protocols'; oracle is an upper bound):")
    for text in parts:
        print(f"    {text}")


def _cmd_fit(args: argparse.Namespace) -> int:
    from pathlib import Path

    from explearn.checkpoint import is_checkpoint, save_result
    from explearn.datasets import load
    from explearn.outputs import check_output_file
    from explearn.train import resolve_device, train

    if Path(args.data_dir).is_file():
        raise ConfigError(f"DATA_DIR {args.data_dir}: is a file, not a folder; give the dataset folder (it holds "
                          "labels.csv, images/ and masks/)")
    options = _data_options(args.data, {"seed": "--data-seed N", "root": "the DATA_DIR argument"})
    if args.image_size:
        options["image_size"] = _image_size(args.image_size)
    if args.backbone_output is not None and args.backbone is None:
        raise ConfigError("--backbone-output goes with --backbone: it selects the logits of your own network")
    if (args.backbone is None) != (args.feature_layer is None):
        raise ConfigError("--backbone and --feature-layer go together: name your network's function and the layer "
                          "where its features f end")
    given = set(sys.argv[1:] if args.argv is None else args.argv)
    if args.backbone is not None and ({"--model", "--model-opt"} & {a.split("=")[0] for a in given}):
        raise ConfigError("--model and --model-opt choose and set a registered model; with --backbone your function "
                          "builds the network: leave them out")
    if args.backbone is None and args.model_opt:  # checked now, not after the data are read
        from explearn.config import from_dict
        from explearn.models import MODELS

        from_dict(MODELS.get(args.model)[1], parse_assignments(args.model_opt, "--model-opt"), "--model-opt")
    # what would fail after minutes of training is checked before the data are read
    resolve_device(args.device)
    check_output_file(args.out, "--out", ours=is_checkpoint, what="an explearn checkpoint",
                      inputs=[Path(args.data_dir) / "labels.csv"])
    data = load("folder", seed=args.data_seed, root=args.data_dir, **options)  # with the options of every dataset
    model, spec, model_name = args.model, None, args.model
    if args.backbone:
        import torch

        from explearn.models.factory import backbone_model

        torch.manual_seed(args.seed)  # the run seed initialises the user's network as it does a registered model
        model, spec = backbone_model(args.backbone, data.n_classes, args.feature_layer, data.input_shape,
                                     output=_output_selector(args.backbone_output))
        model_name = f"{args.backbone} split at {args.feature_layer}"
    counts = {name: len(ds) for name, ds in data.eval_splits().items()}
    print(f"{args.data_dir}: classes {', '.join(data.train.class_names)}; images per split {counts}; "
          f"masks on {int(data.train.has_mask.sum())} of {len(data.train)} training images")
    result = train(data, args.method, args.seed, model=model, **_training_options(args))
    m = result.metrics
    print(f"{args.method} with {model_name}, epoch {m['selected_epoch']} selected ({args.select}):")
    for split in ("val", "test"):
        print(f"  {split:5s} acc {m[f'{split}/acc']:.3f}  balanced_acc {m[f'{split}/balanced_acc']:.3f}  "
              f"align {m[f'{split}/align']:.3f}  " + "  ".join(
                  f"recall[{name}] {m[f'{split}/acc_class{k}']:.3f}" for k, name in enumerate(data.train.class_names)))
    print(f"  {m['time/total_s']:.2f} s in all on {result.config['device']}, {args.threads} torch "
          f"thread{'s' if args.threads != 1 else ''}")
    print(f"wrote {save_result(args.out, result, data, spec)}")
    return 0


def _output_selector(text: str | None) -> int | str | None:
    """--backbone-output: an integer index, or a key / attribute name."""
    if text is None:
        return None
    text = text.strip()
    if not text:
        raise ConfigError("--backbone-output: give the index (0) or the key (logits) of the network's logits")
    return int(text) if text.lstrip("-").isdigit() else text


def _image_size(text: str) -> list[int]:
    parts = text.lower().replace(",", "x").split("x")
    try:
        size = [int(p) for p in parts]
    except ValueError:
        raise ConfigError(f"--image-size: expected HxW (e.g. 96x128) or one number, got {text!r}") from None
    if len(size) == 1:
        size *= 2
    if len(size) != 2 or min(size) < 1:
        raise ConfigError(f"--image-size: expected HxW with positive sizes, got {text!r}")
    from PIL import Image

    if size[0] * size[1] > Image.MAX_IMAGE_PIXELS:  # Pillow's own limit for one image (a decompression bomb)
        raise ConfigError(f"--image-size: {size[0]}x{size[1]} is {size[0] * size[1]:,} pixels per image, more than "
                          f"Pillow's limit of {Image.MAX_IMAGE_PIXELS:,}; give a smaller size")
    return size


def _cmd_predict(args: argparse.Namespace) -> int:
    from explearn.checkpoint import load_checkpoint
    from explearn.inference import image_files, predict_images, predictions_csv
    from explearn.outputs import check_output_file

    ckpt = load_checkpoint(args.checkpoint, backbone=args.backbone)
    files = image_files(args.images)
    if args.out:
        check_output_file(args.out, "--out", ours=_predictions_csv,
                          what="a CSV of predictions written by `explearn predict`", inputs=[*files, args.checkpoint])
    text = predictions_csv(predict_images(ckpt, files), ckpt.class_names)
    if args.out:
        atomic_write(args.out, text)
        print(f"wrote {args.out}")
    else:
        sys.stdout.write(text)
    return 0


def _cmd_explain(args: argparse.Namespace) -> int:
    from pathlib import Path

    from explearn.checkpoint import load_checkpoint
    from explearn.inference import EXPLANATIONS_CSV, explain_images, image_files

    if args.masks and not Path(args.masks).is_dir():
        raise ConfigError(f"--masks {args.masks}: " + ("is a file, not a folder of masks" if Path(args.masks).exists()
                                                       else "folder not found"))
    ckpt = load_checkpoint(args.checkpoint, backbone=args.backbone)
    records = explain_images(ckpt, image_files(args.images), args.out, args.masks, args.attribution, option="--out",
                             read_folders=[p for p in args.images if Path(p).is_dir()])
    out = Path(args.out)
    for r in records:
        inside = f", attribution in mask {r['mass_in_mask']:.2f}" if r["mask"] else ", no mask"
        print(f"{r['image']}: {r['label']} ({r['probability']:.2f}){inside} -> {out / r['overlay']}")
    n = len({r["overlay"] for r in records})
    print(f"wrote {n} overlay{'s' if n != 1 else ''} and {out / EXPLANATIONS_CSV}")
    return 0


def _data_options(items: list[str] | None, elsewhere: dict[str, str]) -> dict[str, str]:
    """``--data KEY=VALUE`` options, refusing the keys that a command takes another way (``elsewhere``: key -> how,
    e.g. the data seed as ``--data-seed N``)."""
    options = parse_assignments(items, "--data")
    for key, how in elsewhere.items():
        if key in options:
            raise ConfigError(f"--data {key}={options[key]}: give it as {how}, not as a dataset option")
    return options


def _predictions_csv(path) -> bool:
    """Whether a file is a CSV that ``explearn predict`` wrote: the header ``image,label`` followed by nothing but
    ``prob_<class>`` columns (a dataset's ``labels.csv``, even with more columns, is not)."""
    with open(path, encoding="utf-8", newline="") as fh:
        header = next(csv.reader(fh), [])
    return header[:2] == ["image", "label"] and len(header) > 2 and all(c.startswith("prob_") for c in header[2:])


def _text_starting(prefix: str):
    """Whether a text file starts with ``prefix`` (a CSV header, a heading): how a command recognises its file."""
    def ours(path) -> bool:
        with open(path, encoding="utf-8") as fh:
            return fh.read(len(prefix)) == prefix

    return ours



def _cmd_reproduce(args: argparse.Namespace) -> int:
    from pathlib import Path

    from explearn.reproduce import reproduce
    from explearn.store import RunStore

    out = args.out or str(Path("reports") / Path(args.collection).name)
    try:  # --out is checked inside, before any planning or training
        summaries, outcome = reproduce(args.collection, args.preset, out, args.workers, args.only,
                                       cluster=args.cluster, option="--out")
    except KeyboardInterrupt:
        runs = RunStore(Path(out) / "runs")
        raise KeyboardInterrupt(f"the {len(runs.finished())} runs finished so far are stored in {runs.root}; run "
                                "the same command again to resume") from None
    for summary in summaries:
        print(summary.read_text())
    for run_id, text in outcome.failed.items():
        print(f"run {run_id} failed:\n{text}", file=sys.stderr)
    for summary in summaries:
        print(f"report: {summary}")
    return 1 if outcome.failed else 0


def _cmd_bench(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from explearn.bench import append_log, markdown, run_bench
    from explearn.outputs import check_distinct, check_output_file, json_with

    log = Path(args.log) if args.log else Path(__file__).resolve().parents[2] / "benchmarks" / "LOG.md"
    check_distinct({"--log": log, "--json": args.json})  # the JSON would replace the log it was just appended to
    check_output_file(log, "--log", ours=_text_starting("# Benchmark log"), what="a benchmark log (it is appended to)")
    if args.json:
        check_output_file(args.json, "--json", ours=json_with("machine", "workloads"),
                          what="figures written by `explearn bench --json`")
    figures = run_bench(quick=args.quick, log=lambda line: print(line, file=sys.stderr))
    text = markdown(figures)
    print(text)
    log.parent.mkdir(parents=True, exist_ok=True)  # the check above leaves no folder it created
    append_log(log, text)
    print(f"appended to {log}")
    if args.json:
        atomic_write(args.json, json.dumps(figures, indent=1))
        print(f"wrote {args.json}")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from explearn.report import check_runs_stored, render
    from explearn.results import collect

    root = Path(args.dir)
    if root.is_file():
        raise ConfigError(f"{root}: is a file; give the report folder `explearn reproduce` wrote (it holds "
                          "manifest.json)")
    folders = [root] if (root / "manifest.json").is_file() else sorted(p.parent for p in root.glob("*/manifest.json"))
    if not folders:
        raise FileNotFoundError(f"{root / 'manifest.json'} not found (nor in a subfolder): not a report folder "
                                "written by `explearn reproduce`")
    loaded = [(folder, collect(folder)) for folder in folders]
    for folder, results in loaded:  # every folder checked before any is written: a refusal changes nothing
        check_runs_stored(folder, results)
    summaries = [render(folder, results) for folder, results in loaded]
    for summary in summaries:
        print(summary.read_text())
    for folder, results in loaded:
        for run_id, problem in sorted(results.damaged.items()):
            print(f"explearn: warning: {folder}: run {run_id} counts as missing: {problem}", file=sys.stderr)
    for summary in summaries:
        print(f"report: {summary}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
