"""Training and evaluation machinery: schedule, parameter groups and AdamW, the train step, evaluation,
checkpoints, process set-up (``runtime``), what a run is built from (``builders``) and the training loop
(``trainer``). See each module's docstring."""
from .builders import build_train_step
from .train_state import BEST_NAME, CheckpointManager, load_train_state
from .evaluate import EvalResult, batch_metrics, evaluate
from .optim import EMA, LR_LIF, LR_MAIN, AdamW, ParamGroup, build_param_groups, is_lif_param
from .schedule import CosineWarmupSchedule, scale_lr
from .step import NetWithLoss, TrainStep, soft_target_cross_entropy
from .trainer import TrainingError, train

__all__ = ["BEST_NAME", "CheckpointManager", "load_train_state", "EvalResult", "batch_metrics", "evaluate", "EMA",
           "LR_LIF", "LR_MAIN", "AdamW", "ParamGroup", "build_param_groups", "is_lif_param",
           "CosineWarmupSchedule", "scale_lr", "NetWithLoss", "TrainStep", "soft_target_cross_entropy",
           "TrainingError", "train", "build_train_step"]
