"""The training engine against independent references: the timm/Swin LR curve written out by hand, PyTorch's
AdamW and clip_grad_norm_, numpy losses and metrics, and the checkpoint files on disk."""
import math
import os

import numpy as np
import pytest

import mindspore as ms
from mindspore import Parameter, Tensor, nn, ops

from src.checkpoint import CheckpointError, read_sidecar, sha256_file
from src.config import ConfigError
from src.engine import (EMA, LR_LIF, LR_MAIN, AdamW, CheckpointManager, CosineWarmupSchedule, TrainStep,
                        batch_metrics, build_param_groups, load_train_state, scale_lr, soft_target_cross_entropy)
from tests.conftest import REPO_ROOT

torch = pytest.importorskip("torch")


@pytest.fixture(autouse=True)
def pynative():
    ms.set_context(mode=ms.PYNATIVE_MODE)
    yield
    ms.set_context(mode=ms.PYNATIVE_MODE)


# ----------------------------------------------------------------------------------------------- schedule

def test_schedule_warmup_end_and_final_step():
    # 5 warmup steps of 20; the cosine spans all 20 steps (timm CosineLRScheduler, warmup_prefix=False).
    s = CosineWarmupSchedule(peak_lr=1e-3, warmup_lr=1e-6, min_lr=1e-5, warmup_steps=5, total_steps=20)
    assert s(0) == pytest.approx(1e-6)
    assert s(4) == pytest.approx(1e-6 + 4 * (1e-3 - 1e-6) / 5)  # last warmup step
    assert s(5) == pytest.approx(1e-5 + (1e-3 - 1e-5) * 0.5 * (1 + math.cos(math.pi * 5 / 20)))  # warmup end
    assert s(19) == pytest.approx(1e-5 + (1e-3 - 1e-5) * 0.5 * (1 + math.cos(math.pi * 19 / 20)))  # final step
    assert s(19) == pytest.approx(1.6094e-5, rel=1e-4)
    assert s(1000) == s(19)  # past the end: the final value
    lif = s.with_peak(1e-4)
    assert lif(4) == pytest.approx(1e-6 + 4 * (1e-4 - 1e-6) / 5)
    assert lif(10) == pytest.approx(1e-5 + (1e-4 - 1e-5) * 0.5 * (1 + math.cos(math.pi * 10 / 20)))


def test_schedule_without_warmup_and_bad_values():
    s = CosineWarmupSchedule(1e-3, 0.0, 0.0, warmup_steps=0, total_steps=4)
    assert [s(i) for i in range(4)] == pytest.approx([1e-3, 1e-3 * (1 + math.cos(math.pi / 4)) / 2, 5e-4,
                                                      1e-3 * (1 + math.cos(3 * math.pi / 4)) / 2])
    with pytest.raises(ValueError, match="warmup_steps"):
        CosineWarmupSchedule(1e-3, 0.0, 0.0, warmup_steps=5, total_steps=4)
    with pytest.raises(ValueError, match="at least one step"):
        CosineWarmupSchedule(1e-3, 0.0, 0.0, warmup_steps=0, total_steps=0)


def test_lr_scaling():
    assert scale_lr(5e-4, 1024, 512, "linear") == pytest.approx(1e-3)  # the recipe: 8 x 128 images
    assert scale_lr(5e-4, 1024, 512, "none") == 5e-4
    with pytest.raises(ValueError, match="lr_scale"):
        scale_lr(5e-4, 1024, 512, "sqrt")


# ----------------------------------------------------------------------------------------------- param groups

def _tiny_snnmlp(**kwargs):
    from src.snn_mlp import create_model

    args = dict(num_classes=3, image_size=32, embed_dim=8, depths=(1, 1, 1, 1), lif=4, lif_backend="primitive")
    args.update(kwargs)
    return create_model("snnmlp", **args)


def test_param_groups_membership():
    net = _tiny_snnmlp()
    groups = {g.name: g for g in build_param_groups(net, 0.05, lif_weight_decay=0.0)}
    names = {name: {p.name for p in g.params} for name, g in groups.items()}
    every = {p.name for p in net.trainable_params()}
    assert names["decay"] | names["no_decay"] | names["lif"] == every
    assert sum(len(v) for v in names.values()) == len(every)  # disjoint
    assert names["lif"] == {n for n in every if n.endswith((".tau", ".Vth"))}
    assert len(names["lif"]) == 4 * 2 * 2  # 4 blocks x (lif1, lif2) x (tau, Vth)
    assert all(n.endswith((".bias", ".gamma", ".beta")) for n in names["no_decay"])
    assert {n for n in every if n.endswith((".bias", ".gamma", ".beta"))} == names["no_decay"]
    assert "head.weight" in names["decay"] and "patch_embed.proj.weight" in names["decay"]
    assert "0.blocks.0.lif_module.conv1.weight" in names["decay"]
    assert (groups["decay"].weight_decay, groups["no_decay"].weight_decay, groups["lif"].weight_decay) == (0.05, 0, 0)
    assert (groups["decay"].lr_slot, groups["no_decay"].lr_slot, groups["lif"].lr_slot) == (LR_MAIN, LR_MAIN, LR_LIF)


def test_param_groups_original_decay_and_fixed_lif():
    net = _tiny_snnmlp(lif_fix_tau=True, lif_fix_vth=True)
    groups = {g.name: g for g in build_param_groups(net, 0.05, filter_bias_and_bn=False)}
    assert set(groups) == {"decay"}  # fixed tau/Vth are no parameters; biases decay as in the original
    assert len(groups["decay"].params) == len(net.trainable_params())


# ----------------------------------------------------------------------------------------------- AdamW vs torch

def test_adamw_matches_torch():
    rng = np.random.default_rng(0)
    shapes = {"w": (4, 3), "b": (3,), "tau": (1,)}
    init = {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}
    ms_params = {k: Parameter(Tensor(v), name=k) for k, v in init.items()}
    from src.engine import ParamGroup

    groups = [ParamGroup("decay", [ms_params["w"]], 0.05, LR_MAIN),
              ParamGroup("no_decay", [ms_params["b"]], 0.0, LR_MAIN),
              ParamGroup("lif", [ms_params["tau"]], 0.01, LR_LIF)]
    opt = AdamW(groups, 0.9, 0.999, 1e-8)
    t_params = {k: torch.nn.Parameter(torch.tensor(v)) for k, v in init.items()}
    t_opt = torch.optim.AdamW([{"params": [t_params["w"]], "weight_decay": 0.05},
                               {"params": [t_params["b"]], "weight_decay": 0.0},
                               {"params": [t_params["tau"]], "weight_decay": 0.01}], betas=(0.9, 0.999), eps=1e-8)
    for step in range(4):
        lr_main, lr_lif = 1e-2 * (step + 1), 3e-3 / (step + 1)
        grads = {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}
        opt(tuple(Tensor(grads[k]) for k in ("w", "b", "tau")), Tensor(np.array([lr_main, lr_lif], np.float32)))
        for i, group in enumerate(t_opt.param_groups):
            group["lr"] = lr_lif if i == 2 else lr_main
        for k, p in t_params.items():
            p.grad = torch.tensor(grads[k])
        t_opt.step()
        for k in shapes:
            np.testing.assert_allclose(ms_params[k].asnumpy(), t_params[k].detach().numpy(), rtol=1e-5, atol=1e-6)
    assert int(opt.adam_step.asnumpy()) == 4
    assert {p.name for p in opt.exp_avg} == {"adam_m.w", "adam_m.b", "adam_m.tau"}


# ----------------------------------------------------------------------------------------------- train step vs torch

class _Mlp(nn.Cell):
    def __init__(self, w1, b1, w2):
        super().__init__()
        self.fc1 = nn.Dense(5, 6, weight_init=Tensor(w1), bias_init=Tensor(b1))
        self.fc2 = nn.Dense(6, 3, weight_init=Tensor(w2), has_bias=False)
        self.act = nn.Tanh()

    def construct(self, x):
        return self.fc2(self.act(self.fc1(x)))


def _torch_step(w1, b1, w2, x, y, lr, clip):
    params = [torch.nn.Parameter(torch.tensor(v)) for v in (w1, b1, w2)]
    logits = torch.tanh(torch.tensor(x) @ params[0].T + params[1]) @ params[2].T
    loss = torch.sum(-torch.tensor(y) * torch.log_softmax(logits, -1), -1).mean()
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(params, clip)
    opt = torch.optim.AdamW([{"params": [params[0], params[2]], "weight_decay": 0.05},
                             {"params": [params[1]], "weight_decay": 0.0}], lr=lr)
    opt.step()
    return float(loss.detach()), float(norm), [p.detach().numpy() for p in params]


def _relative_error(got, expected):
    """Largest deviation over the largest magnitude of ``expected`` (absolute where ``expected`` is all zero)."""
    scale = np.abs(expected).max()
    return float(np.abs(got - expected).max() / (scale if scale else 1.0))


def test_fused_adamw_is_used_on_cpu():
    from src.engine.optim import fused_adamw_status

    usable, reason = fused_adamw_status()
    assert usable, reason
    net = _Mlp(*(np.ones(s, np.float32) for s in ((6, 5), (6,), (3, 6))))
    assert AdamW(build_param_groups(net, 0.05)).fused
    assert not AdamW(build_param_groups(net, 0.05), fused=False).fused


def test_fused_adamw_falls_back_with_a_logged_reason(monkeypatch, caplog):
    from src.engine import optim

    def broken(*args, **kwargs):
        raise RuntimeError("kernel AdamWeightDecay not registered\nfor this target")

    monkeypatch.setattr(optim, "_fused_status", {})
    monkeypatch.setattr(optim.ops, "AdamWeightDecay", lambda: broken)
    net = _Mlp(*(np.ones(s, np.float32) for s in ((6, 5), (6,), (3, 6))))
    with caplog.at_level("WARNING", logger="snn_mlp"):
        opt = AdamW(build_param_groups(net, 0.05))
    assert not opt.fused
    assert "AdamW: separate operators, since ops.AdamWeightDecay unusable on CPU: it fails: kernel " \
           "AdamWeightDecay not registered for this target" in caplog.text


class _ApplyGradients(nn.Cell):
    """``TrainStep.apply_gradients`` compiled alone, fed with given gradients."""

    def __init__(self, step):
        super().__init__(auto_prefix=False)
        self.step = step

    def construct(self, grads, lrs):
        return self.step.apply_gradients(grads, ops.zeros((), ms.float32), lrs, ops.ones((), ms.float32))


@pytest.mark.parametrize("fused, mode", [(True, ms.GRAPH_MODE), (True, ms.PYNATIVE_MODE), (False, ms.GRAPH_MODE)],
                         ids=["fused-graph", "fused-pynative", "separate-graph"])
def test_adamw_matches_torch_over_20_clipped_steps(fused, mode):
    # Clipping, then AdamW with the bias correction folded into lr/eps/wd, against clip_grad_norm_ and
    # torch.optim.AdamW (float64) on the same gradients, with lr changing every step and the clip active on
    # most steps. (Through the network, MindSpore's float32 Tanh/LogSoftmax gradients differ from torch's by
    # up to 1e-4, which Adam's normalisation carries into the weights: test_train_step_matches_torch.)
    ms.set_context(mode=mode)
    rng = np.random.default_rng(7)
    init = [rng.standard_normal(s).astype(np.float32) for s in ((6, 5), (6,), (3, 6))]
    net = _Mlp(*init)
    step = TrainStep(net, AdamW(build_param_groups(net, 0.05), 0.9, 0.999, 1e-8, fused=fused), clip_grad=0.5)
    apply = _ApplyGradients(step)
    t_params = [torch.nn.Parameter(torch.tensor(v, dtype=torch.float64)) for v in init]
    t_opt = torch.optim.AdamW([{"params": [t_params[0], t_params[2]], "weight_decay": 0.05},
                               {"params": [t_params[1]], "weight_decay": 0.0}], lr=0.0, betas=(0.9, 0.999), eps=1e-8)
    order = [p.name for p in step.weights]
    clipped = 0
    for i in range(20):
        lr = 0.02 * (1 + math.cos(math.pi * i / 20)) / 2 + 1e-3
        grads = {name: (rng.standard_normal(p.shape) * rng.uniform(0.02, 0.15)).astype(np.float32)
                 for name, p in zip(("fc1.weight", "fc1.bias", "fc2.weight"), t_params)}
        norm, finite = apply(ms.mutable(tuple(Tensor(grads[name]) for name in order)),
                             Tensor(np.array([lr, 0.0], np.float32)))
        for name, param in zip(("fc1.weight", "fc1.bias", "fc2.weight"), t_params):
            param.grad = torch.tensor(grads[name], dtype=torch.float64)
        t_norm = float(torch.nn.utils.clip_grad_norm_(t_params, 0.5))
        assert bool(finite.asnumpy()) and float(norm.asnumpy()) == pytest.approx(t_norm, rel=1e-6)
        clipped += t_norm > 0.5
        for group in t_opt.param_groups:
            group["lr"] = lr
        t_opt.step()
    assert 5 <= clipped <= 15
    assert int(step.optimizer.adam_step.asnumpy()) == 20
    for param, expected in zip((net.fc1.weight, net.fc1.bias, net.fc2.weight), t_params):
        assert _relative_error(param.asnumpy(), expected.detach().numpy()) < 1e-6, param.name
    assert _relative_error(net.fc1.weight.asnumpy(), init[0]) > 1e-2  # it trained


# Saved by the engine of commit 5a7ee76 (AdamW as separate operators): _Mlp from seed 11 after 3 train steps
# (clip 1, dynamic loss scale 256, EMA 0.9), through CheckpointManager.save_epoch as train.py saves.
OLD_CHECKPOINT = os.path.join(str(REPO_ROOT), "tests", "data", "engine_5a7ee76", "mlp-1_3.ckpt")


def test_checkpoint_of_the_previous_optimizer_resumes_exactly():
    saved = {name: value.asnumpy() for name, value in ms.load_checkpoint(OLD_CHECKPOINT).items()}
    net = _Mlp(*(np.zeros(s, np.float32) for s in ((6, 5), (6,), (3, 6))))
    step = TrainStep(net, AdamW(build_param_groups(net, 0.05)), clip_grad=1.0, loss_scale=1.0,
                     loss_scale_type="dynamic", ema=EMA(net.trainable_params(), 0.9))
    assert step.optimizer.fused
    counters = load_train_state(step.parameters_dict(), OLD_CHECKPOINT)
    assert counters == {"epoch_num": 1, "step_num": 3, "best_top1": 50.0, "best_epoch": 1}
    for name, param in step.parameters_dict().items():
        np.testing.assert_array_equal(param.asnumpy(), saved[name], err_msg=name)
    assert int(step.optimizer.adam_step.asnumpy()) == 3 and float(step.loss_scale.asnumpy()) == 256.0
    # The next step continues the saved moments and bias correction, as torch's AdamW from the same state.
    names = ("fc1.weight", "fc1.bias", "fc2.weight")
    t_params = [torch.nn.Parameter(torch.tensor(saved[n], dtype=torch.float64)) for n in names]
    t_opt = torch.optim.AdamW([{"params": [t_params[0], t_params[2]], "weight_decay": 0.05},
                               {"params": [t_params[1]], "weight_decay": 0.0}], lr=0.01)
    for name, param in zip(names, t_params):
        t_opt.state[param] = {"step": torch.tensor(3.0),
                              "exp_avg": torch.tensor(saved[f"adam_m.{name}"], dtype=torch.float64),
                              "exp_avg_sq": torch.tensor(saved[f"adam_v.{name}"], dtype=torch.float64)}
    grads = {n: np.random.default_rng(12).standard_normal(p.shape).astype(np.float32) * 0.1
             for n, p in zip(names, t_params)}
    _ApplyGradients(step)(ms.mutable(tuple(Tensor(grads[p.name]) for p in step.weights)),
                          Tensor(np.array([0.01, 0.0], np.float32)))
    for name, param in zip(names, t_params):
        param.grad = torch.tensor(grads[name], dtype=torch.float64)
    torch.nn.utils.clip_grad_norm_(t_params, 1.0)
    t_opt.step()
    for name, expected in zip(names, t_params):
        got = step.parameters_dict()[name].asnumpy()
        assert _relative_error(got, expected.detach().numpy()) < 1e-6, name
        assert _relative_error(got, saved[name]) > 1e-4, name  # it moved
    assert int(step.optimizer.adam_step.asnumpy()) == 4


@pytest.mark.parametrize("mode", [ms.GRAPH_MODE, ms.PYNATIVE_MODE], ids=["graph", "pynative"])
def test_train_step_matches_torch(mode):
    ms.set_context(mode=mode)
    rng = np.random.default_rng(1)
    w1, b1, w2 = (rng.standard_normal(s).astype(np.float32) for s in ((6, 5), (6,), (3, 6)))
    x = rng.standard_normal((8, 5)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 8)] * 0.9 + 0.1 / 3  # smoothed soft targets
    net = _Mlp(w1, b1, w2)
    step = TrainStep(net, AdamW(build_param_groups(net, 0.05)), clip_grad=0.5, loss_scale=128.0)
    loss, norm, finite = step(Tensor(x), Tensor(y), Tensor(np.array([0.01, 0.0], np.float32)))
    t_loss, t_norm, t_params = _torch_step(w1, b1, w2, x, y, 0.01, 0.5)
    assert bool(finite.asnumpy())
    assert float(loss.asnumpy()) == pytest.approx(t_loss, rel=1e-5)
    assert float(norm.asnumpy()) == pytest.approx(t_norm, rel=1e-4)
    assert t_norm > 0.5  # the clip was active
    for param, expected in zip((net.fc1.weight, net.fc1.bias, net.fc2.weight), t_params):
        np.testing.assert_allclose(param.asnumpy(), expected, rtol=1e-4, atol=1e-6)


def test_train_step_skips_non_finite_and_adjusts_dynamic_scale():
    rng = np.random.default_rng(2)
    net = _Mlp(*(rng.standard_normal(s).astype(np.float32) for s in ((6, 5), (6,), (3, 6))))
    before = [p.asnumpy().copy() for p in net.trainable_params()]
    step = TrainStep(net, AdamW(build_param_groups(net, 0.05)), clip_grad=5.0, loss_scale=1024.0,
                     loss_scale_type="dynamic", scale_factor=2.0, scale_window=2)
    y = Tensor(np.eye(3, dtype=np.float32)[[0, 1]])
    lrs = Tensor(np.array([0.1, 0.1], np.float32))
    bad = np.ones((2, 5), np.float32)
    bad[0, 0] = np.nan
    _, _, finite = step(Tensor(bad), y, lrs)
    assert not bool(finite.asnumpy())
    assert float(step.loss_scale.asnumpy()) == 512.0
    assert int(step.optimizer.adam_step.asnumpy()) == 0
    for param, old in zip(net.trainable_params(), before):
        np.testing.assert_array_equal(param.asnumpy(), old)
    good = Tensor(np.ones((2, 5), np.float32))
    step(good, y, lrs)
    assert float(step.loss_scale.asnumpy()) == 512.0
    step(good, y, lrs)  # second finite step in a row: the window is full
    assert float(step.loss_scale.asnumpy()) == 1024.0
    assert int(step.optimizer.adam_step.asnumpy()) == 2


# ----------------------------------------------------------------------------------------------- accumulation

def _accumulation_pair(model, mode):
    """Two copies of one network (same initial weights), each with its TrainStep (clip active, dynamic scale)."""
    ms.set_context(mode=mode)
    rng = np.random.default_rng(8)
    if model == "mlp":
        init = [rng.standard_normal(s).astype(np.float32) for s in ((6, 5), (6,), (3, 6))]
        nets = [_Mlp(*init), _Mlp(*init)]
        inputs = rng.standard_normal((32, 5)).astype(np.float32)
        classes = 3
    else:
        ms.set_seed(3)
        nets = [_tiny_snnmlp(drop_path_rate=0.0)]
        nets.append(_tiny_snnmlp(drop_path_rate=0.0))
        for a, b in zip(nets[0].get_parameters(), nets[1].get_parameters()):
            b.set_data(a.value().copy())
        inputs = rng.standard_normal((32, 3, 32, 32)).astype(np.float32)
        classes = 3
    targets = np.eye(classes, dtype=np.float32)[rng.integers(0, classes, 32)] * 0.9 + 0.1 / classes
    steps = [TrainStep(net, AdamW(build_param_groups(net, 0.05)), clip_grad=0.1, loss_scale=256.0,
                       loss_scale_type="dynamic", scale_window=1000) for net in nets]
    return nets, steps, inputs, targets


@pytest.mark.parametrize("model, mode, steps", [("mlp", ms.GRAPH_MODE, 3), ("snnmlp", ms.PYNATIVE_MODE, 1)],
                         ids=["mlp-graph", "snnmlp-pynative"])
def test_accumulating_4_batches_of_8_equals_one_batch_of_32(model, mode, steps):
    from src.engine.step import GradientAccumulation

    nets, (whole, micro), inputs, targets = _accumulation_pair(model, mode)
    accumulate = GradientAccumulation(micro, 4)
    # A small lr: AdamW's first steps divide each gradient by about its own magnitude, so on elements whose
    # contributions cancel (gradients near eps) the float32 rounding of the sums reaches the weights at
    # lr scale; the gradients themselves are compared directly below.
    lrs = Tensor(np.array([1e-4, 1e-4], np.float32))
    for _ in range(steps):
        _, expected = whole.gradients(Tensor(inputs), Tensor(targets), ops.ones((), ms.float32))
        loss, norm, finite = whole(Tensor(inputs), Tensor(targets), lrs)
        for k in range(0, 32, 8):
            accumulate.add(Tensor(inputs[k:k + 8]), Tensor(targets[k:k + 8]))
        for buffer, grad in zip(accumulate.buffers, expected):  # the sum of 4 loss-scaled gradients
            assert _relative_error(buffer.asnumpy() / (4 * 256.0), grad.asnumpy()) < 1e-5, buffer.name
        acc_loss, acc_norm, acc_finite = accumulate.apply(lrs)
        assert bool(finite.asnumpy()) and bool(acc_finite.asnumpy())
        assert float(acc_loss.asnumpy()) == pytest.approx(float(loss.asnumpy()), rel=1e-5)
        assert float(acc_norm.asnumpy()) == pytest.approx(float(norm.asnumpy()), rel=1e-5)
        assert float(norm.asnumpy()) > 0.1  # the clip acts on the accumulated gradient
        assert not any(buffer.asnumpy().any() for buffer in accumulate.buffers)  # emptied for the next step
    for a, b in zip(nets[0].trainable_params(), nets[1].trainable_params()):
        assert _relative_error(b.asnumpy(), a.asnumpy()) < 1e-5, a.name
    assert int(micro.optimizer.adam_step.asnumpy()) == steps  # one AdamW step per optimizer step
    assert float(micro.loss_scale.asnumpy()) == 256.0
    assert not any(name.startswith("grad_accum") for name in micro.parameters_dict())  # not checkpointed


def test_accumulation_skips_the_whole_step_on_one_bad_micro_batch():
    from src.engine.step import GradientAccumulation

    nets, (reference, micro), inputs, targets = _accumulation_pair("mlp", ms.PYNATIVE_MODE)
    accumulate = GradientAccumulation(micro, 2)
    lrs = Tensor(np.array([0.01, 0.01], np.float32))
    before = [p.asnumpy().copy() for p in nets[1].trainable_params()]
    bad = inputs[8:16].copy()
    bad[3, 2] = np.inf
    _, _, finite = accumulate([(Tensor(inputs[:8]), Tensor(targets[:8])), (Tensor(bad), Tensor(targets[8:16]))], lrs)
    assert not bool(finite.asnumpy())
    for param, old in zip(nets[1].trainable_params(), before):
        np.testing.assert_array_equal(param.asnumpy(), old)  # the finite first micro-batch was not applied
    assert int(micro.optimizer.adam_step.asnumpy()) == 0
    assert float(micro.loss_scale.asnumpy()) == 128.0  # halved once, for the step
    with pytest.raises(ValueError, match="takes 2 micro-batches, got 1"):
        accumulate([(Tensor(inputs[:8]), Tensor(targets[:8]))], lrs)
    # Nothing of the skipped step lingers: the next step equals a first step on its own 16 images, at the
    # halved scale.
    reference.loss_scale.set_data(Tensor(128.0, ms.float32))
    reference(Tensor(inputs[16:]), Tensor(targets[16:]), lrs)
    _, _, finite = accumulate([(Tensor(inputs[16:24]), Tensor(targets[16:24])),
                               (Tensor(inputs[24:]), Tensor(targets[24:]))], lrs)
    assert bool(finite.asnumpy())
    for a, b in zip(nets[0].trainable_params(), nets[1].trainable_params()):
        assert _relative_error(b.asnumpy(), a.asnumpy()) < 1e-5, a.name


def test_accumulation_resumes_exactly_from_a_checkpoint(tmp_path):
    # Checkpoints fall between optimizer steps, where the buffers are empty: a run saved after 2 steps and
    # restored into a fresh TrainStep continues exactly as the uninterrupted one.
    from src.engine.step import GradientAccumulation

    nets, steps, inputs, targets = _accumulation_pair("mlp", ms.GRAPH_MODE)
    lrs = Tensor(np.array([1e-2, 1e-2], np.float32))
    batches = [[(Tensor(inputs[k:k + 8]), Tensor(targets[k:k + 8])), (Tensor(inputs[k + 8:k + 16]),
                                                                      Tensor(targets[k + 8:k + 16]))]
               for k in (0, 16, 0, 16)]
    uninterrupted = GradientAccumulation(steps[0], 2)
    for micro_batches in batches:
        uninterrupted(micro_batches, lrs)
    first = GradientAccumulation(steps[1], 2)
    for micro_batches in batches[:2]:
        first(micro_batches, lrs)
    path = CheckpointManager(str(tmp_path), "mlp").save_epoch(steps[1].parameters_dict(), 1, 2,
                                                              {"epoch_num": 1, "step_num": 2})
    fresh_net = _Mlp(*(np.zeros(s, np.float32) for s in ((6, 5), (6,), (3, 6))))
    fresh = TrainStep(fresh_net, AdamW(build_param_groups(fresh_net, 0.05)), clip_grad=0.1, loss_scale=1.0,
                      loss_scale_type="dynamic", scale_window=1000)
    load_train_state(fresh.parameters_dict(), path)
    resumed = GradientAccumulation(fresh, 2)
    for micro_batches in batches[2:]:
        resumed(micro_batches, lrs)
    for a, b in zip(nets[0].trainable_params(), fresh_net.trainable_params()):
        np.testing.assert_array_equal(b.asnumpy(), a.asnumpy(), err_msg=a.name)
    assert int(fresh.optimizer.adam_step.asnumpy()) == 4


def test_epochs_are_cut_to_whole_optimizer_steps(caplog):
    from types import SimpleNamespace

    from src.engine.trainer import _Run

    run = SimpleNamespace(cfg=SimpleNamespace(accumulation_steps=4, batch_size=8))
    with caplog.at_level("WARNING", logger="snn_mlp"):
        assert _Run._optimizer_steps_per_epoch(run, 10) == 2
    assert "10 batches per epoch are not a multiple of accumulation_steps 4: the last 2 of each epoch are left " \
           "out" in caplog.text
    assert _Run._optimizer_steps_per_epoch(run, 8) == 2
    with pytest.raises(ConfigError, match="an epoch has 3 batches of 8 per device, fewer than accumulation_steps 4"):
        _Run._optimizer_steps_per_epoch(run, 3)


def test_ema_follows_its_formula_and_swaps():
    param = Parameter(Tensor(np.array([1.0, 2.0], np.float32)), name="p")
    ema = EMA([param], decay=0.5)
    expected = np.array([1.0, 2.0])
    for n, value in enumerate(([3.0, 0.0], [5.0, 4.0], [-1.0, 1.0])):
        param.set_data(Tensor(np.array(value, np.float32)))
        ema()
        decay = min(0.5, (1 + n) / (10 + n))
        expected = decay * expected + (1 - decay) * np.array(value)
    np.testing.assert_allclose(ema.shadows[0].asnumpy(), expected, rtol=1e-6)
    assert [s.name for s in ema.shadows] == ["ema.p"] and [p.name for p in ema.get_parameters()] == ["p", "ema.p",
                                                                                                    "ema_updates"]
    ema.swap()
    np.testing.assert_allclose(param.asnumpy(), expected, rtol=1e-6)
    ema.swap()
    np.testing.assert_array_equal(param.asnumpy(), [-1.0, 1.0])


def test_ema_swap_around_validation_keeps_training_in_graph_mode():
    # Validation swaps the EMA in and out between compiled train steps: the swap must write into the buffers
    # the compiled graphs use, or later EMA updates and weight updates stop reaching the Parameters.
    ms.set_context(mode=ms.GRAPH_MODE)
    rng = np.random.default_rng(5)
    net = _Mlp(*(rng.standard_normal(s).astype(np.float32) for s in ((6, 5), (6,), (3, 6))))
    ema = EMA(net.trainable_params(), decay=0.9)
    step = TrainStep(net, AdamW(build_param_groups(net, 0.05)), ema=ema)
    x = Tensor(rng.standard_normal((8, 5)).astype(np.float32))
    y = Tensor(np.eye(3, dtype=np.float32)[rng.integers(0, 3, 8)])
    lrs = Tensor(np.array([0.05, 0.05], np.float32))
    previous_shadow = None
    for _ in range(3):
        for _ in range(2):
            step(x, y, lrs)
        live = [p.asnumpy().copy() for p in net.trainable_params()]
        shadows = [s.asnumpy().copy() for s in ema.shadows]
        assert previous_shadow is None or np.abs(shadows[0] - previous_shadow).max() > 1e-4  # EMA still moves
        previous_shadow = shadows[0]
        ema.swap()
        net.set_train(False)
        w1, b1, w2 = shadows
        expected = np.tanh(x.asnumpy() @ w1.T + b1) @ w2.T
        np.testing.assert_allclose(net(x).asnumpy(), expected, rtol=1e-4, atol=1e-4)  # validates the EMA
        ema.swap()
        net.set_train(True)
        for param, value in zip(net.trainable_params(), live):
            np.testing.assert_array_equal(param.asnumpy(), value)


# ----------------------------------------------------------------------------------------------- losses and metrics

def test_soft_target_cross_entropy_ignores_empty_rows():
    rng = np.random.default_rng(3)
    logits = rng.standard_normal((4, 5)).astype(np.float32)
    targets = rng.dirichlet(np.ones(5), 4).astype(np.float32)
    targets[2] = 0.0  # an unreadable image
    got = float(soft_target_cross_entropy(Tensor(logits), Tensor(targets)).asnumpy())
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    rows = [0, 1, 3]
    assert got == pytest.approx(float(np.mean([-(targets[r] * log_probs[r]).sum() for r in rows])), rel=1e-5)


def test_batch_metrics_against_a_loop():
    rng = np.random.default_rng(4)
    logits = rng.integers(0, 4, (40, 7)).astype(np.float32)  # small integers: many ties
    labels = rng.integers(-1, 7, 40)
    top1 = top5 = loss = count = skipped = 0
    for row, label in zip(logits, labels):
        if label < 0:
            skipped += 1
            continue
        count += 1
        order = sorted(range(7), key=lambda c: (-row[c], c))  # stable: ties to the lower index, like argmax
        top1 += order[0] == label
        top5 += label in order[:5]
        loss += math.log(sum(math.exp(v) for v in row)) - row[label]
    got = batch_metrics(logits, labels, topk=5)
    np.testing.assert_allclose(got, [top1, top5, loss, count, skipped], rtol=1e-12)
    assert batch_metrics(logits[:, :3], np.zeros(40), topk=5)[1] == 40  # k capped at the class count
    with pytest.raises(ValueError, match="out of range"):
        batch_metrics(logits, np.full(40, 7))


# ----------------------------------------------------------------------------------------------- checkpoints

def _state(value=0.0):
    return {"w": Parameter(Tensor(np.full((2, 3), value, np.float32)), name="w"),
            "adam_m.w": Parameter(Tensor(np.full((2, 3), value + 1, np.float32)), name="adam_m.w")}


def test_epoch_checkpoints_are_atomic_verified_and_pruned(tmp_path):
    manager = CheckpointManager(str(tmp_path), "snnmlp", keep_max=2)
    for epoch in range(1, 5):
        path = manager.save_epoch(_state(epoch), epoch, 7, {"epoch_num": epoch, "step_num": 7 * epoch})
        assert read_sidecar(path) == sha256_file(path)
    assert sorted(os.listdir(tmp_path)) == ["snnmlp-3_7.ckpt", "snnmlp-3_7.ckpt.sha256", "snnmlp-4_7.ckpt",
                                            "snnmlp-4_7.ckpt.sha256"]
    state = _state()
    counters = load_train_state(state, manager.latest_complete())
    assert counters == {"epoch_num": 4, "step_num": 28}
    assert state["w"].asnumpy()[0, 0] == 4.0 and state["adam_m.w"].asnumpy()[0, 0] == 5.0


def test_a_crash_during_save_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    manager = CheckpointManager(str(tmp_path), "snnmlp", keep_max=3)
    good = manager.save_epoch(_state(1), 1, 7, {"epoch_num": 1, "step_num": 7})

    def crash(save_obj, path, **kwargs):
        with open(path, "wb") as f:
            f.write(b"half a checkpoint")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ms, "save_checkpoint", crash)
    with pytest.raises(CheckpointError, match="No space left"):
        manager.save_epoch(_state(2), 2, 7, {"epoch_num": 2, "step_num": 14})
    monkeypatch.undo()
    assert sorted(os.listdir(tmp_path)) == ["snnmlp-1_7.ckpt", "snnmlp-1_7.ckpt.sha256"]  # no partial file
    assert manager.latest_complete() == good


def test_resume_skips_incomplete_and_corrupt_checkpoints(tmp_path):
    manager = CheckpointManager(str(tmp_path), "snnmlp", keep_max=5)
    good = manager.save_epoch(_state(1), 1, 7, {"epoch_num": 1, "step_num": 7})
    corrupt = manager.save_epoch(_state(2), 2, 7, {"epoch_num": 2, "step_num": 14})
    with open(corrupt, "r+b") as f:
        f.seek(40)
        f.write(b"\x00\x01\x02")
    (tmp_path / "snnmlp-3_7.ckpt").write_bytes(b"no sidecar: an interrupted save")
    assert manager.latest_complete() == good


def test_load_train_state_is_all_or_nothing(tmp_path):
    manager = CheckpointManager(str(tmp_path), "snnmlp")
    path = manager.save_epoch(_state(3), 1, 7, {"epoch_num": 1, "step_num": 7})
    state = {"w": Parameter(Tensor(np.zeros((2, 3), np.float32)), name="w"),
             "adam_m.w": Parameter(Tensor(np.zeros((3, 3), np.float32)), name="adam_m.w")}
    with pytest.raises(CheckpointError, match="another shape"):
        load_train_state(state, path)
    assert not state["w"].asnumpy().any()  # nothing assigned
    weights_only = str(tmp_path / "weights.ckpt")
    from src.checkpoint import save_checkpoint_atomic

    save_checkpoint_atomic({"w": _state()["w"]}, weights_only)
    with pytest.raises(CheckpointError, match="--ckpt_path"):
        load_train_state(_state(), weights_only)


def test_initial_weights_for_fine_tuning_keep_a_new_head(tmp_path):
    from src.checkpoint import save_checkpoint_atomic
    from src.engine.builders import load_initial_weights

    source = _tiny_snnmlp(num_classes=3)
    path = str(tmp_path / "pretrained.ckpt")
    save_checkpoint_atomic(source, path)
    target = _tiny_snnmlp(num_classes=5)
    head_before = target.head.weight.asnumpy().copy()
    load_initial_weights(target, path)
    np.testing.assert_array_equal(target.head.weight.asnumpy(), head_before)
    weights = {p.name: p.asnumpy() for p in source.get_parameters()}
    for param in target.get_parameters():
        if not param.name.startswith("head."):
            np.testing.assert_array_equal(param.asnumpy(), weights[param.name], err_msg=param.name)
    with pytest.raises(CheckpointError, match="does not fit the network"):
        load_initial_weights(_tiny_snnmlp(num_classes=3, embed_dim=16), path)


@pytest.mark.parametrize("env, expected", [
    ({}, False), ({"RANK_SIZE": "1"}, False), ({"RANK_SIZE": "8"}, True), ({"MS_WORKER_NUM": "1"}, True),
    ({"MS_ROLE": "MS_WORKER"}, True), ({"RANK_TABLE_FILE": "/x/rank_table.json"}, True),
])
def test_distributed_only_under_a_launcher(monkeypatch, env, expected):
    from src.engine.runtime import distributed_env

    for name in ("RANK_SIZE", "MS_WORKER_NUM", "MS_ROLE", "RANK_TABLE_FILE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert distributed_env() is expected
