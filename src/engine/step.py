"""The training step: forward, loss, scaled backward, gradient mean across devices, overflow check, global
norm clipping, AdamW, EMA. One ``nn.Cell``, so it compiles whole in GRAPH mode and runs op by op in
PYNATIVE; ``GradientAccumulation`` spreads one optimizer step over several micro-batches.
"""
import mindspore as ms
from mindspore import Parameter, ParameterTuple, Tensor, nn, ops

from ..fast_ops import SquaredSum

__all__ = ["soft_target_cross_entropy", "NetWithLoss", "TrainStep", "GradientAccumulation", "LOSS_SCALE_TYPES"]

LOSS_SCALE_TYPES = ("fixed", "dynamic")

_scale_grad = ops.MultitypeFuncGraph("scale_grad")


@_scale_grad.register("Tensor", "Tensor")
def _scale_grad_tensor(factor, grad):
    return grad * ops.cast(factor, grad.dtype)


def soft_target_cross_entropy(logits, targets):
    """Mean over the samples of ``-sum(target * log_softmax(logits))`` for soft targets ``(B, classes)``.

    Rows whose targets are all zero (an image the pipeline could not read) add nothing and are not
    counted in the mean.
    """
    logits = ops.cast(logits, ms.float32)
    targets = ops.cast(targets, ms.float32)
    per_sample = -ops.reduce_sum(targets * ops.log_softmax(logits, -1), -1)
    weights = ops.reduce_sum(targets, -1)
    return ops.reduce_sum(per_sample) / ops.maximum(ops.reduce_sum(weights), 1.0)


class NetWithLoss(nn.Cell):
    def __init__(self, net):
        super().__init__(auto_prefix=False)  # keep the network's parameter names as they are
        self.net = net

    def construct(self, images, targets):
        return soft_target_cross_entropy(self.net(images), targets)


class TrainStep(nn.Cell):
    """``construct(images, targets, lrs) -> (loss, grad_norm, finite)``: one optimizer step on one batch.

    * loss scaling: ``loss_scale`` multiplies the loss before backward and divides the gradients after;
      ``dynamic`` halves it (``/ scale_factor``) on every non-finite step and doubles it after
      ``scale_window`` finite steps in a row. A non-finite step is never applied, with any scaling.
    * ``grad_reducer``: averages the gradients across devices (data parallel) before anything looks at them.
    * ``clip_grad > 0``: the gradients are scaled by ``min(1, clip_grad / (norm + 1e-6))``, ``norm`` being
      their global L2 norm (torch ``clip_grad_norm_``); ``grad_norm`` is the norm before clipping. The sums
      of squares go through ``src.fast_ops.SquaredSum`` (one fused pass per gradient on CPU), taken of the
      still-scaled gradients and divided by the scale (so a scaled norm beyond float32's range, ~1.8e19,
      counts as an overflow).

    ``gradients`` and ``apply_gradients`` are the two halves, for ``GradientAccumulation``.
    """

    def __init__(self, net, optimizer, clip_grad=0.0, loss_scale=1.0, loss_scale_type="fixed",
                 scale_factor=2.0, scale_window=2000, ema=None, grad_reducer=None):
        super().__init__(auto_prefix=False)
        if loss_scale_type not in LOSS_SCALE_TYPES:
            raise ValueError(f"unknown loss_scale_type '{loss_scale_type}'; valid: {', '.join(LOSS_SCALE_TYPES)}")
        if loss_scale <= 0:
            raise ValueError(f"loss_scale must be positive, got {loss_scale}")
        if clip_grad < 0:
            raise ValueError(f"clip_grad must be >= 0 (0 disables clipping), got {clip_grad}")
        if loss_scale_type == "dynamic" and (scale_factor <= 1 or scale_window < 1):
            raise ValueError(f"dynamic loss scaling needs loss_scale_factor > 1 and loss_scale_window >= 1, "
                             f"got {scale_factor} and {scale_window}")
        self.net_with_loss = NetWithLoss(net)
        self.optimizer = optimizer
        self.weights = optimizer.parameters
        self.grad = ops.GradOperation(get_by_list=True, sens_param=True)
        self.clip_grad = float(clip_grad)
        self.dynamic = loss_scale_type == "dynamic"
        self.scale_factor = float(scale_factor)
        self.scale_window = int(scale_window)
        self.loss_scale = Parameter(Tensor(float(loss_scale), ms.float32), name="loss_scale",
                                    requires_grad=False)
        self.finite_steps = Parameter(Tensor(0, ms.int32), name="loss_scale_finite_steps", requires_grad=False)
        self.ema = ema
        self.use_ema = ema is not None
        self.grad_reducer = grad_reducer if grad_reducer is not None else ops.identity
        self.squared_sum = SquaredSum()
        self.hyper_map = ops.HyperMap()

    def _update_loss_scale(self, finite):
        if finite:
            finite_steps = self.finite_steps + 1
            if finite_steps >= self.scale_window:
                ops.assign(self.loss_scale, self.loss_scale * self.scale_factor)
                finite_steps = finite_steps * 0
            ops.assign(self.finite_steps, finite_steps)
        else:
            ops.assign(self.loss_scale, ops.maximum(self.loss_scale / self.scale_factor, 1.0))
            ops.assign(self.finite_steps, self.finite_steps * 0)
        return finite

    def gradients(self, images, targets, scale):
        """``(loss, grads)``: the loss of the batch and the gradients of ``loss * scale`` (this device's)."""
        loss = self.net_with_loss(images, targets)
        sens = ops.fill(loss.dtype, loss.shape, 1.0) * ops.cast(scale, loss.dtype)
        return loss, self.grad(self.net_with_loss, self.weights)(images, targets, sens)

    def apply_gradients(self, grads, loss, lrs, scale):
        """One optimizer step from ``grads``, gradients of the loss times ``scale``: mean across devices,
        unscaling, overflow check (of the gradients and ``loss``), loss-scale update, clipping, AdamW, EMA.
        Returns ``(grad_norm, finite)``; nothing is applied when ``finite`` is false."""
        grads = self.grad_reducer(grads)
        # The norm of the unscaled gradients, taken from the scaled ones: unscaling and clipping then share one
        # multiply per gradient (each is a pass over all of them, and 353 launches per step in PYNATIVE).
        grad_norm = ops.sqrt(ops.addn(self.hyper_map(self.squared_sum, grads))) / scale
        finite = ops.isfinite(grad_norm) and ops.isfinite(loss)
        if self.dynamic:
            finite = self._update_loss_scale(finite)
        if finite:
            factor = 1.0 / scale
            if self.clip_grad > 0:
                factor = factor * ops.minimum(self.clip_grad / (grad_norm + 1e-6), 1.0)
            grads = self.hyper_map(ops.partial(_scale_grad, factor), grads)
            grad_norm = ops.depend(grad_norm, self.optimizer(grads, lrs))
            if self.use_ema:
                grad_norm = ops.depend(grad_norm, self.ema())
        return grad_norm, finite

    def construct(self, images, targets, lrs):
        scale = self.loss_scale * 1.0  # a value, not the Parameter the update below reassigns
        loss, grads = self.gradients(images, targets, scale)
        grad_norm, finite = self.apply_gradients(grads, loss, lrs, scale)
        return loss, grad_norm, finite


_add_to = ops.MultitypeFuncGraph("add_to")


@_add_to.register("Tensor", "Tensor")
def _add_to_tensor(buffer, grad):
    return ops.assign_add(buffer, ops.cast(grad, buffer.dtype))


_value_of = ops.MultitypeFuncGraph("value_of")


@_value_of.register("Tensor")
def _value_of_tensor(buffer):
    return buffer * 1.0  # a value, not the Parameter that is reset afterwards


_reset = ops.MultitypeFuncGraph("reset")


@_reset.register("Tensor")
def _reset_tensor(buffer):
    return ops.assign(buffer, ops.zeros_like(buffer))


class _Accumulate(nn.Cell):
    """``construct(images, targets)``: adds the micro-batch's scaled gradients and loss to the buffers."""

    def __init__(self, train_step, buffers, loss_sum):
        super().__init__(auto_prefix=False)
        self.train_step, self.buffers, self.loss_sum = train_step, buffers, loss_sum
        self.hyper_map = ops.HyperMap()

    def construct(self, images, targets):
        loss, grads = self.train_step.gradients(images, targets, self.train_step.loss_scale * 1.0)
        loss = ops.depend(loss, self.hyper_map(_add_to, self.buffers, grads))
        return ops.assign_add(self.loss_sum, ops.cast(loss, ms.float32))


class _ApplyAccumulated(nn.Cell):
    """``construct(lrs) -> (mean loss, grad_norm, finite)``: the optimizer step from the buffers, which it then
    empties."""

    def __init__(self, train_step, buffers, loss_sum, steps):
        super().__init__(auto_prefix=False)
        self.train_step, self.buffers, self.loss_sum = train_step, buffers, loss_sum
        self.steps = float(steps)
        self.hyper_map = ops.HyperMap()

    def construct(self, lrs):
        grads = self.hyper_map(_value_of, self.buffers)
        loss = self.loss_sum / self.steps
        # The mean gradient of the micro-batches: the buffers hold the sum of loss-scaled gradients.
        grad_norm, finite = self.train_step.apply_gradients(grads, loss, lrs, self.train_step.loss_scale * self.steps)
        grad_norm = ops.depend(grad_norm, self.hyper_map(_reset, self.buffers))
        grad_norm = ops.depend(grad_norm, ops.assign(self.loss_sum, ops.zeros_like(self.loss_sum)))
        return loss, grad_norm, finite


class GradientAccumulation:
    """``accumulation(micro_batches, lrs) -> (loss, grad_norm, finite)``: one optimizer step of ``train_step`` from
    ``len(micro_batches) == steps`` ``(images, targets)`` pairs, as if they were one batch of all their images.

    Each micro-batch adds its loss-scaled gradients to float32 buffers (one compiled graph, run ``steps``
    times); then one graph averages them, reduces them across devices (once per optimizer step), and runs
    ``TrainStep.apply_gradients``: the overflow check sees every micro-batch (a non-finite one makes the
    sum non-finite and the whole step is skipped), clipping sees the accumulated gradient, and the loss
    scale, AdamW's step and the EMA move once. ``loss`` is the mean over the micro-batches. With
    ``steps == 1`` it is ``train_step`` itself (no buffers). A plain object, not a Cell: the buffers are
    zero between optimizer steps and stay out of the checkpoints (``train_step.parameters_dict()``). The two
    halves are ``add(images, targets)`` (per micro-batch) and ``apply(lrs)``.
    """

    def __init__(self, train_step, steps=1):
        if steps < 1:
            raise ValueError(f"accumulation_steps must be at least 1, got {steps}")
        self.train_step, self.steps = train_step, int(steps)
        if self.steps > 1:
            self.buffers = ParameterTuple(Parameter(ops.zeros(p.shape, ms.float32), name=f"grad_accum.{p.name}",
                                                    requires_grad=False) for p in train_step.weights)
            loss_sum = Parameter(Tensor(0.0, ms.float32), name="grad_accum_loss", requires_grad=False)
            self.add = _Accumulate(train_step, self.buffers, loss_sum)
            self.apply = _ApplyAccumulated(train_step, self.buffers, loss_sum, self.steps)

    def __call__(self, micro_batches, lrs):
        if len(micro_batches) != self.steps:
            raise ValueError(f"an optimizer step takes {self.steps} micro-batches, got {len(micro_batches)}")
        if self.steps == 1:
            return self.train_step(*micro_batches[0], lrs)
        for images, targets in micro_batches:
            self.add(images, targets)
        return self.apply(lrs)
