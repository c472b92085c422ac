"""Networks that expose features f, mapping m and classifier c, and the registry that builds them by name."""

from explearn.models.backbone import SelectOutput, check_outputs, from_backbone, from_parts
from explearn.models.base import ExplainableNet, Outputs, check_model, eval_mode, logits, parameters_of, run_parts
from explearn.models.cnn import SmallCNNOptions, small_cnn
from explearn.models.mapping import MAPPINGS, make_mapping
from explearn.models.mlp import MLPOptions, mlp
from explearn.models.resnet import SmallResNetOptions, small_resnet
from explearn.registry import Registry

#: name -> (builder(input_shape, n_classes, options), options dataclass)
MODELS: Registry = Registry("model")
MODELS.register("small_cnn")((small_cnn, SmallCNNOptions))
MODELS.register("mlp")((mlp, MLPOptions))
MODELS.register("small_resnet")((small_resnet, SmallResNetOptions))

__all__ = [
    "ExplainableNet", "MLPOptions", "Outputs", "MAPPINGS", "MODELS", "SelectOutput", "SmallCNNOptions",
    "SmallResNetOptions", "check_model", "check_outputs", "eval_mode", "from_backbone", "from_parts", "logits", "make_mapping", "mlp", "parameters_of",
    "run_parts", "small_cnn", "small_resnet",
]
