"""Any network as an explearn model: split a user's ``nn.Module`` (e.g. a pretrained torchvision ResNet) at a
named layer into features f and classifier c, or take f and c as given, and put an identity-initialised mapping
layer m between them, so that before training c(m(f(x))) equals the network's own output.
"""

from __future__ import annotations

import contextlib
import difflib
import inspect
from collections import OrderedDict
from collections.abc import Mapping

import torch
from torch import fx, nn

from explearn.errors import ConfigError
from explearn.models.base import ExplainableNet, disable_inplace, eval_mode, out_of_place
from explearn.models.mapping import MAPPINGS, make_mapping


def from_backbone(model: nn.Module, feature_layer: str, input_shape: tuple[int, ...], mapping: str = "conv1x1",
                  output: int | str | None = None, **mapping_options: object) -> ExplainableNet:
    """Split ``model`` after the submodule ``feature_layer`` and insert a mapping layer there.

    f computes everything up to and including ``feature_layer``'s output, c everything after it. An
    ``nn.Sequential`` is split by position (nested Sequentials recursively); any other model is traced with
    ``torch.fx`` and cut into two GraphModules. Either way f and c hold the very parameter tensors of ``model``
    (no copies), so training the result trains ``model``.

    Args:
        model: the network; its ``forward`` must map images to logits.
        feature_layer: a dotted name from ``model.named_modules()``, e.g. "layer3" or "features.7".
        input_shape: (C, H, W) of one image, for the dummy forward that sizes the mapping layer.
        mapping: the mapping layer kind (explearn.models.MAPPINGS); conv1x1 needs a (C, H, W) feature map.
        output: for a network that returns more than logits (a tuple, a dict, an object such as Hugging Face's
            outputs): the index, key or attribute of the logits (``0``, ``"logits"``); see ``from_parts``.
        **mapping_options: options of the mapping layer (``hidden``, ``depth`` for "mlp").

    Returns:
        An ExplainableNet(features, mapping, classifier) whose output equals ``model(x)`` (or its ``output``
        part) before training. In-place operations are made out of place (``models.base.disable_inplace``).

    Raises:
        ConfigError: an unknown layer (with close names), a layer called more than once, a cut that later code
            crosses (e.g. inside a residual block), a model fx cannot trace, features the mapping cannot take,
            or a network that does not return logits (B, K) in train and eval mode.

    Shape:
        x (B, *input_shape) -> f: (B, *feature_shape) -> logits (B, K)
    """
    _check_layer_name(model, feature_layer)
    if isinstance(model, nn.Sequential):
        parts = _split_sequential(model, feature_layer.split("."))
        if parts is not None:
            return from_parts(*parts, input_shape, mapping, output, **mapping_options)
    features, classifier = _split_traced(model, feature_layer)
    return from_parts(features, classifier, input_shape, mapping, output, **mapping_options)


def from_parts(features: nn.Module, classifier: nn.Module, input_shape: tuple[int, ...], mapping: str = "conv1x1",
               output: int | str | None = None, **mapping_options: object) -> ExplainableNet:
    """An explearn model from a given f and c with a new identity-initialised mapping layer between them.

    Args:
        features: f, images -> a feature tensor (a map (C, H, W) per sample for conv1x1 and Grad-CAM methods).
        classifier: c, features -> logits.
        input_shape: (C, H, W) of one image; dummy forwards of two images (no_grad, in eval and in train mode,
            modes and BatchNorm statistics restored after) infer the feature shape and check that c returns logits.
        mapping: the mapping layer kind (explearn.models.MAPPINGS).
        output: where c's logits are when it returns more than a tensor: an index into a tuple or list (``0``), a
            key of a dict (``"logits"``), or an attribute (``"logits"`` of a Hugging Face output). Needed for
            networks with auxiliary outputs (e.g. Inception's in train mode); None: c must return a tensor.
        **mapping_options: options of the mapping layer (``hidden``, ``depth`` for "mlp").

    Returns:
        ExplainableNet(features, mapping, classifier), the mapping on f's device and dtype; in-place operations
        are made out of place (``models.base.disable_inplace``).

    Raises:
        ConfigError: f returns no tensor, c rejects f's output, c's output is not logits (B, K) in eval or train
            mode (naming what it returned and ``output``), or the mapping kind cannot take f's output.
    """
    _check_mapping_options(mapping, mapping_options)
    features, classifier = disable_inplace(features), disable_inplace(classifier)
    if output is not None:
        classifier = SelectOutput(classifier, output)
    z = _probe(features, classifier, input_shape)
    feature_shape = tuple(z.shape[1:])
    try:
        m = make_mapping(mapping, feature_shape, **mapping_options)
    except ConfigError as err:
        raise ConfigError(f"{err}. Cut the network earlier, at a layer that outputs a map (C, H, W), or choose "
                          "another mapping") from None
    device, dtype = _device_dtype(features)
    return ExplainableNet(features, m.to(device=device, dtype=dtype), classifier)


def check_outputs(model: nn.Module, input_shape: tuple[int, ...]) -> None:
    """Check that a three-part model turns images of ``input_shape`` into logits (B, K) in eval and in train mode
    (a user's network given to ``train`` as it is); modes and buffers are restored.

    Raises:
        ConfigError: f returns no tensor, or c(m(f(x))) is not logits (naming what it returned).
    """
    _probe(model.features, nn.Sequential(model.mapping, model.classifier), input_shape)


class SelectOutput(nn.Module):
    """c followed by picking its logits out of what it returns: ``output`` is an index (tuple, list), a key
    (dict) or an attribute name (an object such as a named tuple or a Hugging Face ``ModelOutput``)."""

    def __init__(self, classifier: nn.Module, output: int | str) -> None:
        super().__init__()
        self.classifier = classifier
        self.output = output

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return pick_output(self.classifier(z), self.output)


def pick_output(value: object, output: int | str) -> object:
    """``value[output]`` for a sequence or a mapping, else ``getattr(value, output)``; a tensor is returned as it
    is (a network that returns its logits alone in eval mode and more in train mode).

    Raises:
        ConfigError: ``value`` has no such index, key or attribute (naming what it has).
    """
    if isinstance(value, torch.Tensor):  # e.g. Inception-style: (logits, aux) in train mode, logits in eval mode
        return value
    try:
        if isinstance(value, (tuple, list)) and isinstance(output, int):
            return value[output]
        if isinstance(value, Mapping) and output in value:
            return value[output]
        if isinstance(output, str) and hasattr(value, output):
            return getattr(value, output)
    except IndexError:
        pass
    raise ConfigError(f"the network's output ({_describe(value)}) has no part {output!r}; give output= an index, "
                      "key or attribute it has")


def _probe(features: nn.Module, classifier: nn.Module, input_shape: tuple[int, ...]) -> torch.Tensor:
    """f's output on two zero images, after checking in eval and in train mode that c turns it into logits
    (B, K). Modes, BatchNorm running statistics and every other buffer are restored after; no gradient."""
    device, dtype = _device_dtype(features)
    x = torch.zeros(2, *input_shape, device=device, dtype=dtype)
    buffers = {id(b): b.detach().clone() for module in (features, classifier) for b in module.buffers()}
    z = None
    try:
        with torch.no_grad(), eval_mode(features), eval_mode(classifier):
            for training in (False, True):  # an auxiliary head or a different output may appear in train mode only
                features.train(training)
                classifier.train(training)
                try:
                    out = features(x)
                except Exception as err:  # e.g. 3-channel input_shape for a 1-channel network
                    raise ConfigError(f"the network fails on images of shape (C, H, W) = {tuple(input_shape)}: "
                                      f"{str(err).splitlines()[0]}; check input_shape (e.g. data.input_shape)"
                                      ) from err
                if not isinstance(out, torch.Tensor):
                    raise ConfigError(f"the features f return {_describe(out)}, not a tensor; end f at a layer that "
                                      "returns one tensor")
                try:
                    logits = classifier(out)
                except ConfigError:
                    raise
                except Exception as err:  # a shape mismatch deep inside c: name the shapes the user can act on
                    raise ConfigError(f"the classifier c fails on the features f(x) of shape {tuple(out.shape[1:])} "
                                      f"per sample (input_shape {tuple(input_shape)}): {err}") from err
                _check_logits(logits, "train" if training else "eval")
                if not training:
                    z = out
    finally:
        with torch.no_grad():
            for module in (features, classifier):
                for b in module.buffers():
                    b.copy_(buffers[id(b)])
    return z


def _check_logits(logits: object, mode: str) -> None:
    if isinstance(logits, torch.Tensor) and logits.dim() == 2 and logits.shape[0] == 2 and logits.is_floating_point():
        return
    if isinstance(logits, torch.Tensor):
        what = f"a tensor of shape {tuple(logits.shape)} for 2 images"
        hint = "it must return logits of shape (B, K), one row of class scores per image"
    else:
        what = _describe(logits)
        hint = ("pass output= to from_backbone/from_parts (--backbone-output on the command line) with the index, "
                "key or attribute of the logits, e.g. output=0 or output=\"logits\", or wrap your classifier as "
                "explearn.models.SelectOutput(classifier, 0)")
    raise ConfigError(f"the network returns {what} in {mode} mode, not logits (B, K); {hint}")


def _describe(value: object) -> str:
    """What a network returned, for messages: the type and, for containers, the kinds of their parts."""
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)}"
    if isinstance(value, Mapping):
        return f"a {type(value).__name__} with keys {', '.join(map(repr, value))}"
    if isinstance(value, (tuple, list)):
        parts = ", ".join(f"[{i}] {_describe(v)}" for i, v in enumerate(value))
        return f"a {type(value).__name__} of {len(value)} ({parts})"
    return f"a {type(value).__name__}"


# --- checks ----------------------------------------------------------------------------------------------------


def _check_layer_name(model: nn.Module, name: str) -> None:
    names = [n for n, _ in model.named_modules() if n]
    if name not in names:
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
        hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
        shown = ", ".join(n for n in names if "." not in n)
        raise ConfigError(f"{type(model).__name__} has no submodule {name!r}{hint} (top-level submodules: "
                          f"{shown}; all names: model.named_modules())")


def _check_mapping_options(kind: str, options: dict[str, object]) -> None:
    """Mapping layers ignore unknown keyword options, so a typo ("hiden") would pass silently: catch it here."""
    MAPPINGS.get(kind)
    known = {p for name in MAPPINGS for p in inspect.signature(MAPPINGS.get(name)).parameters
             if p not in ("feature_shape", "_")}
    for key in options:
        if key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.5)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"unknown mapping option {key!r}{hint}; known: {', '.join(sorted(known))}")


def _device_dtype(module: nn.Module) -> tuple[torch.device, torch.dtype]:
    """Where the dummy input must live: with f's first parameter or buffer (CPU float32 if it has none)."""
    for t in (*module.parameters(), *module.buffers()):
        if t.is_floating_point():
            return t.device, t.dtype
    return torch.device("cpu"), torch.float32


# --- nn.Sequential: split by position ----------------------------------------------------------------------------


def _split_sequential(seq: nn.Sequential, path: list[str]) -> tuple[nn.Sequential, nn.Sequential] | None:
    """(f, c) of a Sequential cut after the child ``path[0]`` (recursing into nested Sequentials), keeping the
    children's names so state_dict keys stay readable; None if the path enters a non-Sequential child (that
    needs tracing)."""
    names = list(seq._modules)
    i = names.index(path[0])
    child = seq[i]
    if sum(m is child for m in seq) > 1:
        raise ConfigError(f"layer {path[0]!r} appears more than once in the Sequential, so 'after it' is ambiguous; "
                          "cut at a layer used once")
    before = OrderedDict((n, seq._modules[n]) for n in names[:i])
    after = OrderedDict((n, seq._modules[n]) for n in names[i + 1:])
    if len(path) == 1:
        before[path[0]] = child
        return nn.Sequential(before), nn.Sequential(after)
    if not isinstance(child, nn.Sequential):
        return None
    inner = _split_sequential(child, path[1:])
    if inner is None:
        return None
    before[path[0]] = inner[0]
    # the child's remainder keeps the child's name; OrderedDict order puts it first, as in forward
    return nn.Sequential(before), nn.Sequential(OrderedDict([(path[0], inner[1]), *after.items()]))


# --- any other module: torch.fx --------------------------------------------------------------------------------


class _CutTracer(fx.Tracer):
    """fx's default tracer, but ``layer`` is traced as one call (a leaf), so that its output is one node."""

    def __init__(self, layer: str) -> None:
        super().__init__()
        self.layer = layer

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return module_qualified_name == self.layer or super().is_leaf_module(m, module_qualified_name)


def _trace(model: nn.Module, layer: str) -> fx.Graph:
    """The traced graph of ``model`` with ``layer`` as one node, its in-place calls made out of place first (so
    that what a mutation feeds is explicit to the cut analysis and survives dead-code elimination)."""
    try:
        graph = _CutTracer(layer).trace(model)
    except Exception as err:  # fx fails in many ways (TraceError, TypeError on control flow, ...)
        raise ConfigError(
            f"torch.fx cannot trace {type(model).__name__} ({type(err).__name__}: {err}); split it yourself and "
            "pass f and c to explearn.models.from_parts(features, classifier, input_shape)"
        ) from err
    out_of_place(graph)
    return graph


def _cut_node(graph: fx.Graph, layer: str) -> fx.Node:
    calls = [n for n in graph.nodes if n.op == "call_module" and n.target == layer]
    if len(calls) > 1:
        raise ConfigError(f"layer {layer!r} is called {len(calls)} times in forward, so 'after it' is ambiguous; "
                          "cut at a layer that is called once")
    if not calls:
        raise ConfigError(f"layer {layer!r} is never called as a module in forward (unused, or inside a module "
                          "fx treats as one call); cut at a layer that forward calls")
    return calls[0]


def _input_free(nodes: list[fx.Node]) -> set[fx.Node]:
    """The nodes that do not depend on the model's input (parameters, constants and what is computed from them
    alone): c may compute them again, so they may cross the cut."""
    free: set[fx.Node] = set()
    for node in nodes:  # topological order: a node's inputs come first
        if node.op not in ("placeholder", "output") and all(n in free for n in node.all_input_nodes):
            free.add(node)
    return free


def _crossing(graph: fx.Graph, cut: fx.Node) -> tuple[fx.Node, fx.Node] | None:
    """(a node after the cut, an input-dependent value from before the cut other than the cut's output that it
    uses), if any: such a value would have to skip the mapping layer, so the layer is not a cut point."""
    nodes = list(graph.nodes)
    i = nodes.index(cut)
    before = set(nodes[:i]) - _input_free(nodes)
    for node in nodes[i + 1:]:
        for used in node.all_input_nodes:
            if used in before:
                return node, used
    return None


def _cut_point(model: nn.Module, layer: str) -> tuple[fx.Graph, fx.Node]:
    """The traced graph and the node of ``layer``'s output, checked to be a cut point."""
    graph = _trace(model, layer)
    cut = _cut_node(graph, layer)
    crossing = _crossing(graph, cut)
    if crossing is not None:
        node, used = crossing
        raise ConfigError(
            f"{layer!r} is not a cut point of {type(model).__name__}: after it, node {node.name!r} ({node.op} "
            f"{node.target}) still uses {used.name!r}, a value computed before it (a skip connection across the "
            f"cut?), which would bypass the mapping layer. {_suggest_enclosing(model, layer)}"
        )
    return graph, cut


def _suggest_enclosing(model: nn.Module, layer: str) -> str:
    """Name the nearest enclosing module that is a cut point (e.g. the residual block around a conv)."""
    parts = layer.split(".")
    for k in range(len(parts) - 1, 0, -1):
        parent = ".".join(parts[:k])
        try:
            _cut_point(model, parent)
        except ConfigError:
            continue
        return f"Cut at the enclosing block {parent!r} instead."
    return "Cut at an enclosing block (a module whose output is all that later layers use)."


def _split_traced(model: nn.Module, layer: str) -> tuple[nn.Module, nn.Module]:
    """f: the graph's inputs -> ``layer``'s output; c: that output -> the graph's output, each a GraphModule that
    takes its submodules and parameters from ``model`` by reference, so nothing is copied.

    torch.fx fixes ``self.training`` at the value it has while tracing (``F.dropout(x, training=self.training)``,
    as in PyTorch's MNIST example, or ``if self.training:``), so the model is traced in train and in eval mode; a
    part whose code differs between the two becomes a ``ByMode`` that runs the graph of its current mode.
    """
    parts = {}
    for training in (True, False):
        with _in_mode(model, training):
            parts[training] = _split_traced_once(model, layer)
    (f_train, c_train), (f_eval, c_eval) = parts[True], parts[False]
    return ByMode.of(f_train, f_eval), ByMode.of(c_train, c_eval)


class ByMode(nn.Module):
    """A traced part whose code depends on the training flag: one graph per mode over the same submodules and
    parameters (the eval graph is not registered as a child, so every parameter and state_dict key appears once).
    Runs the train graph in train mode and the eval graph in eval mode."""

    def __init__(self, train_graph: fx.GraphModule, eval_graph: fx.GraphModule) -> None:
        super().__init__()
        self.graph = train_graph
        self.__dict__["eval_graph"] = eval_graph

    @staticmethod
    def of(train_graph: fx.GraphModule, eval_graph: fx.GraphModule) -> nn.Module:
        """The train graph alone when both modes trace to the same code (the usual case), else a ``ByMode``."""
        return train_graph if train_graph.code == eval_graph.code else ByMode(train_graph, eval_graph)

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        return (self.graph if self.training else self.__dict__["eval_graph"])(*args)


@contextlib.contextmanager
def _in_mode(model: nn.Module, training: bool):
    """``model`` in train (or eval) mode for the block; every submodule's own mode restored after."""
    modes = [(m, m.training) for m in model.modules()]
    model.train(training)
    try:
        yield model
    finally:
        for m, mode in modes:
            m.train(mode)


def _split_traced_once(model: nn.Module, layer: str) -> tuple[fx.GraphModule, fx.GraphModule]:
    """``_split_traced`` in the model's current mode."""
    graph, cut = _cut_point(model, layer)
    nodes = list(graph.nodes)
    i = nodes.index(cut)

    f_graph, env = fx.Graph(), {}
    for node in nodes[: i + 1]:
        env[node] = f_graph.node_copy(node, lambda n: env[n])
    f_graph.output(env[cut])

    c_graph = fx.Graph()
    c_env = {cut: c_graph.placeholder("features")}
    free = _input_free(nodes)
    for node in nodes[:i]:  # parameters and constants used after the cut: c reads or computes them again
        if node in free:
            c_env[node] = c_graph.node_copy(node, lambda n: c_env[n])
    for node in nodes[i + 1:]:
        c_env[node] = c_graph.node_copy(node, lambda n: c_env[n])
    return _module(model, f_graph, "Features"), _module(model, c_graph, "Classifier")


def _module(model: nn.Module, graph: fx.Graph, name: str) -> fx.GraphModule:
    """A GraphModule over ``graph`` without the dead code of the other half (``model``'s own unused branches)."""
    gm = fx.GraphModule(model, graph, name)  # DCE needs the owning module to know which calls are pure
    gm.graph.eliminate_dead_code()
    gm.graph.lint()
    gm.delete_all_unused_submodules()
    gm.recompile()
    return gm
