"""odenet: Neural ODEs from scratch (integrators, solvers, RKNet on MNIST)."""

from .checkpoints import CheckpointError, load_checkpoint, load_model, pretrained_models, save_checkpoint
from .config import PRESETS, ConfigError, TrainConfig
from .integrators import (
    METHODS,
    BogackiShampine32,
    ButcherTableau,
    DormandPrince54,
    Euler,
    Kutta3,
    Midpoint,
    ModifiedEuler,
    Ralston,
    RungeKutta4,
    RungeKutta38,
    RungeKuttaMethod,
    TableauError,
    custom_method,
    get_method,
    method_names,
    register_method,
)
from .models import GradientNet, ModelConfig, ModelTrajectory, RKNet
from .solvers import (
    AdaptiveStepSolver,
    FixedStepSolver,
    IController,
    MaxStepsExceeded,
    Solution,
    SolverError,
    SolverStats,
    StepSizeTooSmall,
)

__version__ = "0.1.0"

__all__ = [
    "AdaptiveStepSolver", "BogackiShampine32", "ButcherTableau", "CheckpointError", "ConfigError",
    "DormandPrince54", "Euler", "FixedStepSolver", "GradientNet", "IController", "Kutta3", "METHODS",
    "MaxStepsExceeded", "Midpoint", "ModelConfig", "ModelTrajectory", "ModifiedEuler", "PRESETS", "RKNet",
    "Ralston", "RungeKutta38", "RungeKutta4", "RungeKuttaMethod", "Solution", "SolverError", "SolverStats",
    "StepSizeTooSmall", "TableauError", "TrainConfig", "custom_method", "get_method", "load_checkpoint",
    "load_model", "method_names", "pretrained_models", "register_method", "save_checkpoint",
]
