"""Model zoo: `load_model(name)` returns a network with its preprocessing and unit addressing."""

from vizprobe.models import efficientnet_lite, inceptionv1, timm_zoo, torchvision_zoo  # noqa: F401  (register the zoo)
from vizprobe.models.preprocessing import Preprocessing
from vizprobe.models.registry import LoadedModel, ModelSpec, get_spec, list_models, load_model, register_model

__all__ = ["LoadedModel", "ModelSpec", "Preprocessing", "get_spec", "list_models", "load_model", "register_model"]
