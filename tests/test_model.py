"""The network: official parameter layout, parity with an independent PyTorch reference, training."""
import inspect
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import mindspore as ms
from mindspore import Tensor, nn

from src.convert import to_mindspore_names
from src.snn_mlp import SNNMLP, count_params, create_model, snnmlp_t

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"
SMALL = dict(num_classes=10, embed_dim=16, depths=(1, 1, 2, 1), lif=4)


def reference_layout(name):
    rows = (Path(REFERENCE / f"{name}_params.txt")).read_text().strip().splitlines()
    return [(n, tuple(int(d) for d in re.findall(r"\d+", shape))) for n, shape in (r.split("\t") for r in rows)]


def layout(net):
    return [(p.name, tuple(p.shape)) for p in net.get_parameters()]


@pytest.mark.parametrize("name,count", [("snnmlp_t", 28_335_736), ("snnmlp_s", 49_703_080),
                                        ("snnmlp_b", 87_897_288)])
def test_parameter_layout_matches_official_checkpoint(name, count):
    net = create_model(name)
    assert layout(net) == reference_layout(name)
    assert count_params(net) == count


def test_layout_independent_of_networks_built_before():
    # Other networks (and another SNN-MLP) already built in this process must not shift the names.
    create_model("snnmlp_s", num_classes=5)
    nn.SequentialCell([nn.Dense(3, 4), nn.Dense(4, 2)])
    assert layout(snnmlp_t()) == reference_layout("snnmlp_t")
    assert layout(create_model("snn_mlp")) == reference_layout("snnmlp_t")


def test_layout_in_fresh_process():
    code = ("from src.snn_mlp import snnmlp_t\n"
            "print('\\n'.join(p.name for p in snnmlp_t().get_parameters()))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1]).stdout.split()
    assert out == [n for n, _ in reference_layout("snnmlp_t")]


def test_flops_as_the_paper_counts():
    assert round(snnmlp_t().flops(224) / 1e9, 1) == 4.4
    assert round(create_model("snnmlp_s").flops(224) / 1e9, 1) == 8.5
    assert round(create_model("snnmlp_b").flops(224) / 1e9, 1) == 15.2


def test_unknown_model_and_bad_arguments():
    with pytest.raises(ValueError, match="snnmlp_t"):
        create_model("snnmlp_x")
    with pytest.raises(ValueError, match="lif"):
        SNNMLP(lif=-3, **{k: v for k, v in SMALL.items() if k != "lif"})


@pytest.mark.parametrize("shape", [(1, 3, 40, 64), (1, 3, 64, 100), (1, 1, 64, 64), (3, 64, 64)])
def test_input_size_rule(shape):
    net = SNNMLP(**SMALL)
    with pytest.raises(ValueError, match="divisible by 32|NCHW"):
        net(Tensor(np.zeros(shape, np.float32)))


def copy_torch_weights(torch_net, net):
    params = {p.name: p for p in net.get_parameters()}
    state = to_mindspore_names({k: v.detach().numpy() for k, v in torch_net.state_dict().items()})
    assert set(state) == set(params)
    for name, value in state.items():
        params[name].set_data(Tensor(value))


@pytest.mark.parametrize("mode", ["PYNATIVE", "GRAPH"])
@pytest.mark.parametrize("kwargs,shape", [(SMALL, (2, 3, 64, 96)),
                                          (dict(SMALL, lif=3, depths=(1, 1, 1, 1)), (1, 3, 96, 64))])
def test_logits_match_pytorch_reference(mode, kwargs, shape):
    torch = pytest.importorskip("torch")
    from reference.snn_mlp_torch import TorchSNNMLP, randomize_

    ms.set_context(mode=getattr(ms, f"{mode}_MODE"))
    try:
        torch_net = randomize_(TorchSNNMLP(**kwargs)).eval()
        net = SNNMLP(drop_path_rate=0.0, **kwargs)
        net.set_train(False)
        copy_torch_weights(torch_net, net)
        x = np.random.RandomState(0).randn(*shape).astype(np.float32)
        ours = net(Tensor(x)).asnumpy()
        with torch.no_grad():
            theirs = torch_net(torch.from_numpy(x)).numpy()
    finally:
        ms.set_context(mode=ms.PYNATIVE_MODE)
    assert np.abs(ours - theirs).max() / np.abs(theirs).max() < 1e-4


def test_full_size_tiny_matches_pytorch_reference():
    torch = pytest.importorskip("torch")
    from reference.snn_mlp_torch import TorchSNNMLP, randomize_

    torch_net = randomize_(TorchSNNMLP(), seed=1).eval()
    net = snnmlp_t(drop_path_rate=0.0)
    net.set_train(False)
    copy_torch_weights(torch_net, net)
    x = np.random.RandomState(1).randn(1, 3, 64, 64).astype(np.float32)
    with torch.no_grad():
        theirs = torch_net(torch.from_numpy(x)).numpy()
    ours = net(Tensor(x)).asnumpy()
    assert np.abs(ours - theirs).max() / np.abs(theirs).max() < 1e-4


def test_training_step_decreases_loss_and_moves_tau_and_vth():
    ms.set_seed(0)
    net = SNNMLP(drop_path_rate=0.0, lif_init_vth=0.1, **SMALL)
    lif_params = [p for p in net.get_parameters() if p.name.endswith((".tau", ".Vth"))]
    assert len(lif_params) == 2 * 2 * sum(SMALL["depths"])
    before = {p.name: p.asnumpy().copy() for p in lif_params}
    train_step = nn.TrainOneStepCell(nn.WithLossCell(net, nn.CrossEntropyLoss()),
                                     nn.Adam(net.trainable_params(), learning_rate=1e-3))
    train_step.set_train()
    rng = np.random.RandomState(0)
    x = Tensor(rng.randn(4, 3, 32, 32).astype(np.float32))
    y = Tensor(rng.randint(0, 10, 4).astype(np.int32))
    losses = [float(train_step(x, y).asnumpy()) for _ in range(6)]
    assert losses[-1] < losses[0]
    moved = [p.name for p in lif_params if not np.allclose(p.asnumpy(), before[p.name])]
    assert any(n.endswith(".tau") for n in moved) and any(n.endswith(".Vth") for n in moved)
    # Stages 2 and 3 are 2x2 and 1x1 at a 32x32 input: no whole window of 4, so no gradient reaches them.
    assert all(not n.startswith(("0.blocks.2.blocks.", "0.blocks.3.blocks.")) for n in moved)


def test_drop_path_only_in_training():
    net = SNNMLP(drop_path_rate=0.5, **SMALL)
    x = Tensor(np.random.RandomState(0).randn(4, 3, 32, 32).astype(np.float32))
    net.set_train(False)
    np.testing.assert_array_equal(net(x).asnumpy(), net(x).asnumpy())
    net.set_train(True)
    assert not np.allclose(net(x).asnumpy(), net(x).asnumpy())


def test_without_fast_ops_the_network_is_mindspore_cells_only(monkeypatch):
    # What amp's rewrite and export need: no fused-kernel subclasses once the fast ops are off.
    monkeypatch.setenv("SNNMLP_FAST_OPS", "0")
    module = SNNMLP(**SMALL).layers[0].blocks[0].lif_module
    assert (type(module.dw1), type(module.norm1), type(module.actn)) == (nn.Conv2d, nn.GroupNorm, nn.GELU)


def test_every_network_argument_is_a_config_key_and_every_model_list_comes_from_list_models():
    import warnings

    import export
    from src.config import KEYS, load_config, model_kwargs
    from src.hub import HUB_MODELS
    from src.models import list_models

    assert [n for n in inspect.signature(SNNMLP).parameters if n not in KEYS] == []  # lif_bias was missing
    cfg = load_config(["--model", "snnmlp_custom", "--embed_dim", "8", "--depths", "1,1,1,1", "--lif_bias", "false"])
    assert model_kwargs(cfg)["lif_bias"] is False
    assert KEYS["model"].choices == tuple(list_models(deprecated=True)) and export.MODEL_CHOICES == list(
        KEYS["model"].choices)
    assert HUB_MODELS == ("snn_mlp", "snnmlp_t", "snnmlp_s", "snnmlp_b")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        net = create_model("snnmlp", num_classes=3, embed_dim=8, depths=(1, 1, 1, 1), lif_backend="primitive")
    assert net.embed_dim == 8 and any("use 'snnmlp_custom'" in str(w.message) for w in caught)
    with pytest.raises(ValueError, match="valid names: snn_mlp, snnmlp_t, snnmlp_s, snnmlp_b, snnmlp_custom"):
        create_model("snnmlp_x")


def test_network_and_config_defaults_agree_with_the_original():
    # hub.load and train.py must start from the same values: the original's training settings (drop path
    # T 0.2 / S 0.3 / B 0.5 from its configs/*.yaml, LIF tau 0.25 and Vth 0.1 from its main.py).
    from src.config import KEYS, load_config, model_kwargs

    for name, parameter in inspect.signature(SNNMLP).parameters.items():
        if KEYS[name].default is not None:
            assert parameter.default == KEYS[name].default, name
    signature = inspect.signature(SNNMLP).parameters
    assert (signature["drop_path_rate"].default, signature["lif_init_tau"].default,
            signature["lif_init_vth"].default) == (0.2, 0.25, 0.1)
    cfg = load_config(["--config_path", "config/snnmlp_digits.yaml", "--model", "snnmlp_s", "--embed_dim", "null",
                       "--depths", "null", "--drop_path_rate", "null", "--image_size", "32"])
    net = create_model(cfg.model, **dict(model_kwargs(cfg), lif_backend="primitive"))
    assert net.layers[3].blocks[1].drop_path.keep_prob == pytest.approx(1 - 0.3)  # S's, the last block's
    assert float(net.layers[0].blocks[0].lif_module.lif1.Vth.asnumpy()[0]) == pytest.approx(0.1)
