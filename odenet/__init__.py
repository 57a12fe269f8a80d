"""odenet: Neural ODEs from scratch (integrators, solvers, RKNet on MNIST)."""

from odenet.errors import OdenetError
from odenet.model.rknet import GradientNet, ModelConfig, ModelTrajectory, RKNet
from odenet.ode.integrators import (
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
    UnknownIntegrator,
    custom_method,
    get_method,
    method_names,
)
from odenet.ode.solvers import (
    AdaptiveStepSolver,
    FixedStepSolver,
    IController,
    MaxStepsExceeded,
    Solution,
    SolverError,
    SolverSpec,
    SolverStats,
    StepRecord,
    StepSizeTooSmall,
)
from odenet.train.checkpoints import CheckpointError, load_checkpoint, load_model, pretrained_models, save_checkpoint
from odenet.train.config import PRESETS, ConfigError, TrainConfig

__version__ = "0.2.0"

__all__ = [
    "AdaptiveStepSolver", "BogackiShampine32", "ButcherTableau", "CheckpointError", "ConfigError",
    "DormandPrince54", "Euler", "FixedStepSolver", "GradientNet", "IController", "Kutta3", "METHODS",
    "MaxStepsExceeded", "Midpoint", "ModelConfig", "ModelTrajectory", "ModifiedEuler", "OdenetError", "PRESETS",
    "RKNet", "Ralston", "RungeKutta38", "RungeKutta4", "RungeKuttaMethod", "Solution", "SolverError", "SolverSpec",
    "SolverStats", "StepRecord", "StepSizeTooSmall", "TableauError", "TrainConfig", "UnknownIntegrator",
    "custom_method", "get_method", "load_checkpoint", "load_model", "method_names", "pretrained_models",
    "save_checkpoint",
]
