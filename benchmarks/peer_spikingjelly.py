"""conv-small and ResNet-19 in SpikingJelly, timed for benchmarks/peers.py.

Each runs in its own process. `conv-small`, the network of issue #8 in
SpikingJelly's multi-step mode (`step_mode="m"`,
time-major `[T, N, ...]` tensors; the stateless layers fold time into the
batch, the neurons loop over time inside `LIFNode`):

    x_seq = x repeated T times             # [T, N, 1, 28, 28]
    Conv2d -> BatchNorm2d -> LIFNode -> AvgPool2d -> Conv2d -> BatchNorm2d
    -> LIFNode -> AvgPool2d -> Flatten -> Linear(256) -> LIFNode
    -> Linear(10) -> mean over time

`LIFNode(tau=2.0, decay_input=False, v_threshold=1.0, v_reset=0.0)` gives
`u = 0.5 v + I` with a hard reset to 0 (SpikingJelly's default surrogate,
`Sigmoid`). SpikingJelly 2.0 has no `backend` argument any more; its
multi-step LIF runs `functional.lif_multi_step`, the PyTorch loop that
versions <= 0.0.0.0.14 called `backend="torch"`. The state is cleared with
`functional.reset_net` after every batch, as in its tutorials.

`resnet19`, the spiking ResNet-19 of Zheng et al. 2021 (Table 4, Fig. 5b;
`bench_common.RESNET19`), written with the same multi-step layers and
SpikingJelly's own tdBN (`layer.ThresholdDependentBatchNorm2d`, alpha 1,
or 1/sqrt(2) before each block's addition, as `keras_snn.models` sets
them): basic blocks conv3x3 - tdBN - LIF - conv3x3 - tdBN plus the
shortcut (1x1 conv where the shape changes) - tdBN, added, LIF.

Cross-entropy, Adam(lr=1e-3). Imports only torch and spikingjelly.

Run (from the repository root, in the peers' venv):

    .venv-peers/bin/python benchmarks/peer_spikingjelly.py --timesteps 4
    .venv-peers/bin/python benchmarks/peer_spikingjelly.py \\
        --workload resnet19 --timesteps 2 --batch 32 --infer-batch 64
"""

import importlib.metadata
import inspect

from bench_common import RESNET19
from bench_common import SHORTCUT_ALPHA
from bench_common import measure_torch
from bench_common import peer_main
from bench_common import set_torch_threads
from spikingjelly.activation_based import functional
from spikingjelly.activation_based import layer
from spikingjelly.activation_based import neuron
from torch import nn


def lif_node():
    kwargs = dict(
        tau=2.0,
        decay_input=False,
        v_threshold=1.0,
        v_reset=0.0,
        step_mode="m",
    )
    if "backend" in inspect.signature(neuron.LIFNode).parameters:
        kwargs["backend"] = "torch"  # SpikingJelly <= 0.0.0.0.14
    return neuron.LIFNode(**kwargs)


def conv_small():
    return nn.Sequential(
        layer.Conv2d(1, 32, 3, padding=1, step_mode="m"),
        layer.BatchNorm2d(32, step_mode="m"),
        lif_node(),
        layer.AvgPool2d(2, step_mode="m"),
        layer.Conv2d(32, 64, 3, padding=1, step_mode="m"),
        layer.BatchNorm2d(64, step_mode="m"),
        lif_node(),
        layer.AvgPool2d(2, step_mode="m"),
        layer.Flatten(step_mode="m"),
        layer.Linear(64 * 7 * 7, 256, step_mode="m"),
        lif_node(),
        layer.Linear(256, 10, step_mode="m"),
    )


def tdbn(channels, alpha=1.0):
    # Multi-step only: it takes no step_mode.
    return layer.ThresholdDependentBatchNorm2d(
        alpha=alpha, v_th=1.0, num_features=channels
    )


def conv_tdbn(cin, cout, kernel, stride, alpha=1.0):
    conv = layer.Conv2d(
        cin, cout, kernel, stride, kernel // 2, bias=False, step_mode="m"
    )
    return [conv, tdbn(cout, alpha)]


class Block(nn.Module):
    """The spiking basic block (Zheng et al. 2021, Fig. 5b)."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.main = nn.Sequential(
            *conv_tdbn(cin, cout, 3, stride),
            lif_node(),
            *conv_tdbn(cout, cout, 3, 1, SHORTCUT_ALPHA),
        )
        if stride != 1 or cin != cout:
            shortcut = conv_tdbn(cin, cout, 1, stride, SHORTCUT_ALPHA)
        else:
            shortcut = [tdbn(cout, SHORTCUT_ALPHA)]
        self.shortcut = nn.Sequential(*shortcut)
        self.out = lif_node()

    def forward(self, x_seq):
        return self.out(self.main(x_seq) + self.shortcut(x_seq))


def resnet19():
    width = RESNET19["conv1"]
    layers = [*conv_tdbn(3, width, 3, 1), lif_node()]
    for channels, blocks, stride in RESNET19["stages"]:
        for block in range(blocks):
            layers.append(Block(width, channels, stride if block == 0 else 1))
            width = channels
    return nn.Sequential(
        *layers,
        layer.AvgPool2d(2, step_mode="m"),
        layer.Flatten(step_mode="m"),
        layer.Linear(width * 4 * 4, RESNET19["fc"], step_mode="m"),
        lif_node(),
        layer.Linear(RESNET19["fc"], RESNET19["classes"], step_mode="m"),
    )


NETWORKS = {"conv-small": conv_small, "resnet19": resnet19}


def forward(net, x, timesteps):
    x_seq = x.unsqueeze(0).repeat(timesteps, 1, 1, 1, 1)
    return net(x_seq).mean(0)


def measure(
    workload, timesteps, batch, infer_batch, warmup, repeats, seed, precision
):
    return measure_torch(
        "spikingjelly",
        f"spikingjelly {importlib.metadata.version('spikingjelly')}",
        NETWORKS[workload],
        lambda net, x: forward(net, x, timesteps),
        (batch, infer_batch, warmup, repeats),
        seed,
        after=functional.reset_net,
        workload=workload,
        precision=precision,
    )


def main():
    peer_main(
        measure, __doc__.splitlines()[0], set_torch_threads, tuple(NETWORKS)
    )


if __name__ == "__main__":
    main()
