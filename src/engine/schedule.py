"""Learning-rate schedule: linear warmup, then cosine decay, evaluated per optimizer step.

The curve is the one of the original recipe (timm ``CosineLRScheduler`` with ``t_in_epochs=False`` and no
warmup prefix): during warmup ``lr(s) = warmup_lr + s * (peak - warmup_lr) / warmup_steps``; afterwards
``lr(s) = min_lr + (peak - min_lr) * (1 + cos(pi * s / total_steps)) / 2``. The cosine runs over the whole
training, warmup included, exactly as there. The value is a pure function of the global step, so a resumed
run needs nothing but its step count to continue on the same curve.
"""
import math
from dataclasses import dataclass

__all__ = ["CosineWarmupSchedule", "scale_lr", "LR_SCALE_RULES"]

LR_SCALE_RULES = ("linear", "none")


@dataclass(frozen=True)
class CosineWarmupSchedule:
    peak_lr: float
    warmup_lr: float
    min_lr: float
    warmup_steps: int
    total_steps: int

    def __post_init__(self):
        if self.total_steps < 1:
            raise ValueError(f"the schedule needs at least one step, got total_steps={self.total_steps}")
        if not 0 <= self.warmup_steps <= self.total_steps:
            raise ValueError(f"warmup_steps must lie in [0, total_steps={self.total_steps}], "
                             f"got {self.warmup_steps}")
        for name in ("peak_lr", "warmup_lr", "min_lr"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative, got {getattr(self, name)}")

    def __call__(self, step):
        """Learning rate of the 0-based optimizer step ``step`` (past the end: the final value)."""
        step = min(max(int(step), 0), self.total_steps - 1)
        if step < self.warmup_steps:
            return self.warmup_lr + step * (self.peak_lr - self.warmup_lr) / self.warmup_steps
        cosine = 0.5 * (1.0 + math.cos(math.pi * step / self.total_steps))
        return self.min_lr + (self.peak_lr - self.min_lr) * cosine

    def with_peak(self, peak_lr):
        """The same curve shape for another peak (the LIF group's own schedule)."""
        return CosineWarmupSchedule(peak_lr, self.warmup_lr, self.min_lr, self.warmup_steps, self.total_steps)


def scale_lr(lr, global_batch_size, base_batch_size, rule):
    """``lr`` given per ``base_batch_size`` images, scaled to ``global_batch_size`` by ``rule``.

    ``linear``: ``lr * global / base`` (the original recipe: 5e-4 per 512 images); ``none``: unchanged.
    """
    if rule == "none":
        return lr
    if rule == "linear":
        if base_batch_size <= 0:
            raise ValueError(f"base_batch_size must be positive for lr_scale 'linear', got {base_batch_size}")
        return lr * global_batch_size / base_batch_size
    raise ValueError(f"unknown lr_scale '{rule}'; valid: {', '.join(LR_SCALE_RULES)}")
