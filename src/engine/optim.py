"""Parameter groups, AdamW and the weight EMA.

The original recipe trains two parameter sets with two AdamW optimizers: everything but the LIF neurons at
the (batch-scaled) base learning rate with weight decay 0.05, and the LIF ``tau``/``Vth`` at ``lif_lr``
(1e-4) without decay, each on its own warmup+cosine schedule. Here that is one AdamW with per-parameter
learning-rate slots (``LR_MAIN``, ``LR_LIF``) fed every step by the training loop, so the update itself is
a single compiled graph and the learning rates are plain inputs (nothing to restore on resume but the step).
"""
from dataclasses import dataclass
from typing import List

import mindspore as ms
from mindspore import Parameter, ParameterTuple, Tensor, nn, ops

__all__ = ["ParamGroup", "LR_MAIN", "LR_LIF", "is_lif_param", "is_no_decay_param", "build_param_groups",
           "AdamW", "EMA"]

# Index of each learning rate in the ``lrs`` tensor the optimizer takes every step.
LR_MAIN, LR_LIF = 0, 1
_LIF_PARAM_NAMES = ("tau", "Vth")
_NO_DECAY_SUFFIXES = (".bias", ".gamma", ".beta")


@dataclass
class ParamGroup:
    name: str
    params: List[Parameter]
    weight_decay: float
    lr_slot: int


def is_lif_param(name):
    """The LIF neurons' membrane decay ``tau`` and threshold ``Vth`` (trained with their own rate)."""
    return name.rsplit(".", 1)[-1] in _LIF_PARAM_NAMES


def is_no_decay_param(param):
    """Norm scales/shifts, biases and any other 1-element-per-channel vector: decaying them only hurts."""
    return len(param.shape) <= 1 or param.name.endswith(_NO_DECAY_SUFFIXES)


def build_param_groups(net, weight_decay, lif_weight_decay=0.0, filter_bias_and_bn=True):
    """Split the trainable parameters of ``net`` into ``decay``, ``no_decay`` and ``lif`` groups.

    ``filter_bias_and_bn=False`` puts biases and norm parameters in ``decay`` too, as the PyTorch original
    did (it applied its weight decay to every non-LIF parameter). Empty groups are dropped.
    """
    decay, no_decay, lif = [], [], []
    for param in net.trainable_params():
        if is_lif_param(param.name):
            lif.append(param)
        elif filter_bias_and_bn and is_no_decay_param(param):
            no_decay.append(param)
        else:
            decay.append(param)
    groups = [ParamGroup("decay", decay, float(weight_decay), LR_MAIN),
              ParamGroup("no_decay", no_decay, 0.0, LR_MAIN),
              ParamGroup("lif", lif, float(lif_weight_decay), LR_LIF)]
    return [g for g in groups if g.params]


_adamw_update = ops.MultitypeFuncGraph("adamw_update")


@_adamw_update.register("Number", "Number", "Number", "Tensor", "Tensor", "Tensor", "Number", "Number",
                        "Tensor", "Tensor", "Tensor", "Tensor")
def _adamw_update_tensor(beta1, beta2, eps, correction1, correction2, lrs, slot, weight_decay, param,
                         exp_avg, exp_avg_sq, grad):
    # torch.optim.AdamW arithmetic: decoupled decay first, then the bias-corrected Adam step.
    lr = lrs[slot]
    grad = ops.cast(grad, ms.float32)
    ops.assign(exp_avg, beta1 * exp_avg + (1.0 - beta1) * grad)
    ops.assign(exp_avg_sq, beta2 * exp_avg_sq + (1.0 - beta2) * grad * grad)
    denom = ops.sqrt(exp_avg_sq) / ops.sqrt(correction2) + eps
    new_param = param * (1.0 - lr * weight_decay) - (lr / correction1) * exp_avg / denom
    return ops.assign(param, ops.cast(new_param, param.dtype))


class AdamW(nn.Cell):
    """AdamW over ``groups`` (see ``build_param_groups``); ``construct(grads, lrs)`` applies one step.

    ``grads`` follow ``self.parameters``; ``lrs`` is a float32 tensor indexed by each group's ``lr_slot``.
    State: ``adam_m.*``/``adam_v.*`` moments and the step count ``adam_step`` (bias correction).
    """

    def __init__(self, groups, beta1=0.9, beta2=0.999, eps=1e-8):
        super().__init__()
        if not 0.0 <= beta1 < 1.0 or not 0.0 <= beta2 < 1.0:
            raise ValueError(f"AdamW betas must lie in [0, 1), got ({beta1}, {beta2})")
        if eps <= 0:
            raise ValueError(f"AdamW eps must be positive, got {eps}")
        self.groups = groups
        self.parameters = ParameterTuple([p for g in groups for p in g.params])
        if not self.parameters:
            raise ValueError("AdamW got no trainable parameters")
        self.exp_avg = self.parameters.clone(prefix="adam_m", init="zeros")
        self.exp_avg_sq = self.parameters.clone(prefix="adam_v", init="zeros")
        self.slots = tuple(g.lr_slot for g in groups for _ in g.params)
        self.weight_decays = tuple(g.weight_decay for g in groups for _ in g.params)
        self.adam_step = Parameter(Tensor(0, ms.int32), name="adam_step", requires_grad=False)
        self.beta1, self.beta2, self.eps = float(beta1), float(beta2), float(eps)
        self.hyper_map = ops.HyperMap()

    def construct(self, grads, lrs):
        step = self.adam_step + 1
        ops.assign(self.adam_step, step)
        step = ops.cast(step, ms.float32)
        correction1 = 1.0 - ops.pow(self.beta1, step)
        correction2 = 1.0 - ops.pow(self.beta2, step)
        return self.hyper_map(ops.partial(_adamw_update, self.beta1, self.beta2, self.eps, correction1,
                                          correction2, lrs),
                              self.slots, self.weight_decays, self.parameters, self.exp_avg, self.exp_avg_sq,
                              grads)


_ema_update = ops.MultitypeFuncGraph("ema_update")


@_ema_update.register("Tensor", "Tensor", "Tensor")
def _ema_update_tensor(decay, shadow, param):
    return ops.assign(shadow, decay * shadow + (1.0 - decay) * ops.cast(param, shadow.dtype))


class EMA(nn.Cell):
    """Exponential moving average of ``params`` in ``ema.*`` shadows.

    The decay ramps up as ``min(decay, (1 + n) / (10 + n))`` over the first updates ``n``, so a short run
    (or the start of a long one) is not dominated by the random initialisation.
    """

    def __init__(self, params, decay=0.9999):
        super().__init__(auto_prefix=False)  # the swapper Cell below shares the shadows: keep their names
        if not 0.0 < decay < 1.0:
            raise ValueError(f"ema_decay must lie in (0, 1), got {decay}")
        self.params = ParameterTuple(params)
        self.shadows = self.params.clone(prefix="ema", init="same")
        self.decay = float(decay)
        self.updates = Parameter(Tensor(0, ms.int32), name="ema_updates", requires_grad=False)
        self.hyper_map = ops.HyperMap()
        self._swapper = _Swapper(self.params, self.shadows)

    def construct(self):
        n = ops.cast(self.updates, ms.float32)
        decay = ops.minimum(ops.scalar_to_tensor(self.decay, ms.float32), (1.0 + n) / (10.0 + n))
        ops.assign(self.updates, self.updates + 1)
        return self.hyper_map(ops.partial(_ema_update, decay), self.shadows, self.params)

    def swap(self):
        """Exchange live and averaged weights (call twice to undo): validation and best.ckpt use the EMA.

        In place (``Assign``) in a compiled Cell: ``Parameter.set_data`` would give the Parameter a new buffer
        while an already compiled train step kept updating the old one.
        """
        return self._swapper()


_swap_values = ops.MultitypeFuncGraph("swap_values")


@_swap_values.register("Tensor", "Tensor")
def _swap_values_tensor(param, shadow):
    live = param * 1.0
    live = ops.depend(live, ops.assign(param, ops.cast(shadow, param.dtype)))
    return ops.assign(shadow, ops.cast(live, shadow.dtype))


class _Swapper(nn.Cell):
    def __init__(self, params, shadows):
        super().__init__(auto_prefix=False)
        self.params, self.shadows = params, shadows
        self.hyper_map = ops.HyperMap()

    def construct(self):
        return self.hyper_map(_swap_values, self.params, self.shadows)
