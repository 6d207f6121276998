"""Models of the core: the PLIF spiking CNN (AU classifier), the C3D baseline, the cVAE (face
reconstruction), checkpoints with model cards, and the inference runtime the ROS nodes use.

Importing this package imports torch and spikingjelly (not rclpy); ``ros2_evmicro.core`` itself does not
import it, so light tools stay light.
"""

from ros2_evmicro.core.models.c3d import C3D
from ros2_evmicro.core.models.checkpoint import (
    CardMismatchError,
    CheckpointError,
    ChecksumError,
    ModelCard,
    card_for,
    load_card,
    load_checkpoint,
    save_checkpoint,
)
from ros2_evmicro.core.models.cvae import (
    CVAE,
    DEFAULT_CONFIG,
    PAPER_SIZE_CONFIG,
    CVAEConfig,
    CVAEInputError,
    cvae_loss,
    cvae_param_count,
)
from ros2_evmicro.core.models.registry import UnknownModelError, build_model, known_models, param_count
from ros2_evmicro.core.models.runtime import (
    AUStreamer,
    DeviceError,
    Reconstructor,
    classify_clip,
    configure_threads,
    resolve_device,
)
from ros2_evmicro.core.models.snn import AUSNN, ModelInputError, reset_lanes, reset_state, snn_loss

__all__ = [
    "AUSNN",
    "AUStreamer",
    "C3D",
    "CVAE",
    "CVAEConfig",
    "CVAEInputError",
    "CardMismatchError",
    "CheckpointError",
    "ChecksumError",
    "DEFAULT_CONFIG",
    "DeviceError",
    "ModelCard",
    "ModelInputError",
    "PAPER_SIZE_CONFIG",
    "Reconstructor",
    "UnknownModelError",
    "build_model",
    "card_for",
    "classify_clip",
    "configure_threads",
    "cvae_loss",
    "cvae_param_count",
    "known_models",
    "load_card",
    "load_checkpoint",
    "param_count",
    "reset_lanes",
    "reset_state",
    "resolve_device",
    "save_checkpoint",
    "snn_loss",
]
