"""conv-small in SpikingJelly, timed for benchmarks/peers.py (own process).

The network of issue #8 in SpikingJelly's multi-step mode (`step_mode="m"`,
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
Cross-entropy, Adam(lr=1e-3). Imports only torch and spikingjelly.

Run (from the repository root, in the peers' venv):

    .venv-peers/bin/python benchmarks/peer_spikingjelly.py --timesteps 4
"""

import importlib.metadata
import inspect

import torch
from bench_common import measure_steps
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


def forward(net, x, timesteps):
    x_seq = x.unsqueeze(0).repeat(timesteps, 1, 1, 1, 1)
    return net(x_seq).mean(0)


def measure(timesteps, batch, infer_batch, warmup, repeats, seed):
    torch.manual_seed(seed)
    net = conv_small()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, 1, 28, 28, generator=generator)
    y = torch.randint(0, 10, (batch,), generator=generator)
    x_infer = torch.rand(infer_batch, 1, 28, 28, generator=generator)

    def train_step():
        optimizer.zero_grad()
        loss = loss_fn(forward(net, x, timesteps), y)
        loss.backward()
        optimizer.step()
        functional.reset_net(net)
        return loss.item()

    def infer_step():
        with torch.no_grad():
            out = forward(net, x_infer, timesteps).sum().item()
        functional.reset_net(net)
        return out

    version = importlib.metadata.version("spikingjelly")
    return measure_steps(
        "spikingjelly",
        f"spikingjelly {version}, torch {torch.__version__}",
        torch.get_num_threads(),
        batch,
        infer_batch,
        (net.train, train_step, net.eval, infer_step),
        warmup,
        repeats,
    )


def main():
    peer_main(measure, __doc__.splitlines()[0], set_torch_threads)


if __name__ == "__main__":
    main()
