"""Parameter groups, AdamW and the weight EMA.

The original recipe trains two parameter sets with two AdamW optimizers: everything but the LIF neurons at
the (batch-scaled) base learning rate with weight decay 0.05, and the LIF ``tau``/``Vth`` at ``lif_lr``
(1e-4) without decay, each on its own warmup+cosine schedule. Here that is one AdamW with per-parameter
learning-rate slots (``LR_MAIN``, ``LR_LIF``) fed every step by the training loop, so the update itself is
a single compiled graph and the learning rates are plain inputs (nothing to restore on resume but the step).
"""
import logging
import math
from dataclasses import dataclass
from typing import List

import numpy as np

import mindspore as ms
from mindspore import Parameter, ParameterTuple, Tensor, nn, ops

__all__ = ["ParamGroup", "LR_MAIN", "LR_LIF", "is_lif_param", "is_no_decay_param", "build_param_groups",
           "AdamW", "fused_adamw_status", "EMA"]

logger = logging.getLogger("snn_mlp")

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


_fused_adamw_update = ops.MultitypeFuncGraph("fused_adamw_update")


@_fused_adamw_update.register("Function", "Number", "Number", "Tensor", "Tensor", "Tensor", "Tensor", "Number",
                              "Number", "Tensor", "Tensor", "Tensor", "Tensor")
def _fused_adamw_update_tensor(op, beta1, beta2, lr_factor, eps, decay_factor, lrs, slot, weight_decay, param,
                               exp_avg, exp_avg_sq, grad):
    # The bias correction folded into lr and eps, the decay rescaled to stay lr * weight_decay (see AdamW).
    lr = lrs[slot] * lr_factor
    decay = ops.cast(weight_decay * decay_factor, ms.float32)
    update = op(param, exp_avg, exp_avg_sq, lr, beta1, beta2, eps, decay, ops.cast(grad, param.dtype))
    return ops.depend(param, update)


def _one_minus_power(beta, step):
    """``1 - beta**step`` without the cancellation of ``1 - pow`` (at step 1 and beta2 0.999 that loses four
    digits in float32). ``beta`` is the float32 value the fused kernel uses for its moment averages, so the
    correction is exact for the averages it keeps."""
    return -ops.expm1(step * math.log(float(np.float32(beta))))


def _probe_fused_adamw():
    """Run ``ops.AdamWeightDecay`` for two steps on a few numbers and compare with its documented formula."""
    beta1, beta2, eps, lr, decay = 0.9, 0.999, 1e-3, 0.1, 0.5
    values = np.array([1.0, -2.0, 0.5, 3.0], np.float32)
    grads = (np.array([0.3, -1.0, 2.0, 0.0], np.float32), np.array([-0.2, 0.5, 1.0, 4.0], np.float32))
    param = Parameter(Tensor(values), name="fused_adamw_probe")
    exp_avg = Parameter(Tensor(np.zeros(4, np.float32)), name="fused_adamw_probe_m")
    exp_avg_sq = Parameter(Tensor(np.zeros(4, np.float32)), name="fused_adamw_probe_v")
    op = ops.AdamWeightDecay()
    w, m, v = values.astype(np.float64), np.zeros(4), np.zeros(4)
    b1, b2 = float(np.float32(beta1)), float(np.float32(beta2))  # the kernel's float32 betas
    for grad in grads:
        op(param, exp_avg, exp_avg_sq, Tensor(lr, ms.float32), beta1, beta2, Tensor(eps, ms.float32),
           Tensor(decay, ms.float32), Tensor(grad))
        m = b1 * m + (1 - b1) * grad
        v = b2 * v + (1 - b2) * grad * grad
        w = w - lr * (m / (np.sqrt(v) + eps) + decay * w)
    for name, got, expected in (("var", param, w), ("m", exp_avg, m), ("v", exp_avg_sq, v)):
        error = np.abs(got.asnumpy() - expected).max() / np.abs(expected).max()
        if not error < 1e-5:
            return f"its {name} differs from the documented update by {error:.2g} (relative)"
    return None


_fused_status = {}


def fused_adamw_status():
    """``(usable, reason)``: whether ``ops.AdamWeightDecay`` runs and computes its documented update on the
    current device target (probed once per target)."""
    target = ms.get_context("device_target")
    if target not in _fused_status:
        try:
            problem = _probe_fused_adamw()
        except Exception as e:  # any failure of the primitive on this target means: do not use it
            problem = f"it fails: {' '.join(str(e).split())[:200]}"
        _fused_status[target] = ((False, f"ops.AdamWeightDecay unusable on {target}: {problem}") if problem
                                 else (True, f"ops.AdamWeightDecay on {target}"))
    return _fused_status[target]


class AdamW(nn.Cell):
    """AdamW over ``groups`` (see ``build_param_groups``); ``construct(grads, lrs)`` applies one step.

    ``grads`` follow ``self.parameters``; ``lrs`` is a float32 tensor indexed by each group's ``lr_slot``.
    State: ``adam_m.*``/``adam_v.*`` moments and the step count ``adam_step`` (bias correction).

    The update is ``torch.optim.AdamW``'s. By default (``fused=None``) it runs as MindSpore's fused
    ``ops.AdamWeightDecay`` (one kernel per parameter instead of a dozen elementwise operators), which computes
    ``p - lr' (m / (sqrt(v) + eps') + wd' p)`` without bias correction. With ``c1 = 1 - beta1^t`` and
    ``c2 = 1 - beta2^t``, torch's ``p (1 - lr wd) - lr/c1 m / (sqrt(v)/sqrt(c2) + eps)`` is that update with
    ``lr' = lr sqrt(c2)/c1``, ``eps' = eps sqrt(c2)`` and ``wd' = wd c1/sqrt(c2)`` (so ``lr' wd' = lr wd``).
    Where the primitive fails or computes something else (``fused_adamw_status``), the same update runs as
    separate operators, and the reason is logged. ``fused=False`` forces those.
    """

    def __init__(self, groups, beta1=0.9, beta2=0.999, eps=1e-8, fused=None):
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
        if fused is None:
            fused, reason = fused_adamw_status()
            if fused:
                logger.info("AdamW: %s", reason)
            else:
                logger.warning("AdamW: separate operators, since %s", reason)
        self.fused = bool(fused)
        self.fused_op = ops.AdamWeightDecay()
        self.hyper_map = ops.HyperMap()

    def construct(self, grads, lrs):
        step = self.adam_step + 1
        ops.assign(self.adam_step, step)
        step = ops.cast(step, ms.float32)
        if self.fused:
            correction1 = _one_minus_power(self.beta1, step)
            root2 = ops.sqrt(_one_minus_power(self.beta2, step))
            return self.hyper_map(ops.partial(_fused_adamw_update, self.fused_op, self.beta1, self.beta2,
                                              root2 / correction1, self.eps * root2, correction1 / root2, lrs),
                                  self.slots, self.weight_decays, self.parameters, self.exp_avg, self.exp_avg_sq,
                                  grads)
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
