"""The training step: forward, loss, scaled backward, gradient mean across devices, overflow check, global
norm clipping, AdamW, EMA. One ``nn.Cell``, so it compiles whole in GRAPH mode and runs op by op in
PYNATIVE.
"""
import mindspore as ms
from mindspore import Parameter, Tensor, nn, ops

__all__ = ["soft_target_cross_entropy", "NetWithLoss", "TrainStep", "LOSS_SCALE_TYPES"]

LOSS_SCALE_TYPES = ("fixed", "dynamic")

_square_sum = ops.MultitypeFuncGraph("square_sum")


@_square_sum.register("Tensor")
def _square_sum_tensor(grad):
    grad = ops.cast(grad, ms.float32)
    return ops.reduce_sum(grad * grad)


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
    """``construct(images, targets, lrs) -> (loss, grad_norm, finite)``.

    * loss scaling: ``loss_scale`` multiplies the loss before backward and divides the gradients after;
      ``dynamic`` halves it (``/ scale_factor``) on every non-finite step and doubles it after
      ``scale_window`` finite steps in a row. A non-finite step is never applied, with any scaling.
    * ``grad_reducer``: averages the gradients across devices (data parallel) before anything looks at them.
    * ``clip_grad > 0``: the gradients are scaled by ``min(1, clip_grad / (norm + 1e-6))``, ``norm`` being
      their global L2 norm (torch ``clip_grad_norm_``); ``grad_norm`` is the norm before clipping.
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

    def construct(self, images, targets, lrs):
        scale = self.loss_scale * 1.0  # a value, not the Parameter the update below reassigns
        loss = self.net_with_loss(images, targets)
        sens = ops.fill(loss.dtype, loss.shape, 1.0) * ops.cast(scale, loss.dtype)
        grads = self.grad(self.net_with_loss, self.weights)(images, targets, sens)
        grads = self.grad_reducer(grads)
        grads = self.hyper_map(ops.partial(_scale_grad, 1.0 / scale), grads)
        grad_norm = ops.sqrt(ops.addn(self.hyper_map(_square_sum, grads)))
        finite = ops.isfinite(grad_norm) and ops.isfinite(loss)
        if self.dynamic:
            finite = self._update_loss_scale(finite)
        if finite:
            if self.clip_grad > 0:
                factor = ops.minimum(self.clip_grad / (grad_norm + 1e-6), 1.0)
                grads = self.hyper_map(ops.partial(_scale_grad, factor), grads)
            loss = ops.depend(loss, self.optimizer(grads, lrs))
            if self.use_ema:
                loss = ops.depend(loss, self.ema())
        return loss, grad_norm, finite
