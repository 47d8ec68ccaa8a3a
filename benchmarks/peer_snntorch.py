"""conv-small and ResNet-19 in snnTorch, timed for benchmarks/peers.py.

Each runs in its own process. `conv-small`, the network of issue #8
written as in snnTorch's tutorials: `snn.Leaky` neurons and a Python loop
over time that applies every layer at every step:

    for t in range(T):
        conv1 -> bn1 -> Leaky -> avgpool -> conv2 -> bn2 -> Leaky -> avgpool
        -> flatten -> fc1 (256) -> Leaky -> fc2 (10)
    logits = mean over time of fc2's output

`resnet19`, the spiking ResNet-19 of Zheng et al. 2021 (Table 4, Fig. 5b;
`bench_common.RESNET19`) in snnTorch's way for deep networks: `Leaky`
neurons with `init_hidden=True` (each keeps its state; `snntorch.utils.
reset` clears them before a sample), the whole network applied at every
step of the time loop; basic blocks conv3x3 - BN - Leaky - conv3x3 - BN
plus the shortcut (1x1 conv where the shape changes) - BN, added, Leaky.
snnTorch has no threshold-dependent BN; `nn.BatchNorm2d` (its statistics
over each step's batch) stands in for tdBN, with the same work.

`Leaky(beta=0.5, threshold=1.0, reset_mechanism="zero")` is the hard-reset
LIF with decay 0.5 (snnTorch's default surrogate, `atan`). Cross-entropy,
Adam(lr=1e-3). Imports only torch and snntorch. Prints one JSON line:

    PEER_RESULT {"train_samples_per_s": ..., "infer_samples_per_s": ...,
                 "peak_rss_mb": ..., ...}

Run (from the repository root, in the peers' venv):

    .venv-peers/bin/python benchmarks/peer_snntorch.py --timesteps 4
    .venv-peers/bin/python benchmarks/peer_snntorch.py --workload resnet19 \\
        --timesteps 2 --batch 32 --infer-batch 64
"""

import snntorch
import snntorch.utils
import torch
from bench_common import RESNET19
from bench_common import measure_torch
from bench_common import peer_main
from bench_common import set_torch_threads
from torch import nn

LEAKY = dict(beta=0.5, threshold=1.0, reset_mechanism="zero")


class ConvSmall(nn.Module):
    def __init__(self, timesteps):
        super().__init__()
        self.timesteps = timesteps
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(32)
        self.lif1 = snntorch.Leaky(**LEAKY)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(64)
        self.lif2 = snntorch.Leaky(**LEAKY)
        self.fc1 = nn.Linear(64 * 7 * 7, 256)
        self.lif3 = snntorch.Leaky(**LEAKY)
        self.fc2 = nn.Linear(256, 10)
        self.pool = nn.AvgPool2d(2)

    def forward(self, x):
        mem1 = self.lif1.init_leaky()
        mem2 = self.lif2.init_leaky()
        mem3 = self.lif3.init_leaky()
        outputs = []
        for _ in range(self.timesteps):
            spk1, mem1 = self.lif1(self.bn1(self.conv1(x)), mem1)
            spk2, mem2 = self.lif2(self.bn2(self.conv2(self.pool(spk1))), mem2)
            flat = self.pool(spk2).flatten(1)
            spk3, mem3 = self.lif3(self.fc1(flat), mem3)
            outputs.append(self.fc2(spk3))
        return torch.stack(outputs).mean(0)


def leaky():
    """A hard-reset LIF that keeps its own state (`init_hidden`)."""
    return snntorch.Leaky(**LEAKY, init_hidden=True)


def conv_bn(cin, cout, kernel, stride):
    return [
        nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False),
        nn.BatchNorm2d(cout),
    ]


class Block(nn.Module):
    """The spiking basic block (Zheng et al. 2021, Fig. 5b)."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.main = nn.Sequential(
            *conv_bn(cin, cout, 3, stride), leaky(), *conv_bn(cout, cout, 3, 1)
        )
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(*conv_bn(cin, cout, 1, stride))
        else:
            self.shortcut = nn.BatchNorm2d(cout)
        self.out = leaky()

    def forward(self, x):
        return self.out(self.main(x) + self.shortcut(x))


class ResNet19(nn.Module):
    def __init__(self, timesteps):
        super().__init__()
        self.timesteps = timesteps
        width = RESNET19["conv1"]
        layers = [*conv_bn(3, width, 3, 1), leaky()]
        for channels, blocks, stride in RESNET19["stages"]:
            for block in range(blocks):
                layers.append(
                    Block(width, channels, stride if block == 0 else 1)
                )
                width = channels
        self.features = nn.Sequential(*layers, nn.AvgPool2d(2), nn.Flatten())
        self.fc = nn.Linear(width * 4 * 4, RESNET19["fc"])
        self.fc_lif = leaky()
        self.decoding = nn.Linear(RESNET19["fc"], RESNET19["classes"])

    def forward(self, x):
        snntorch.utils.reset(self)
        outputs = []
        for _ in range(self.timesteps):
            outputs.append(
                self.decoding(self.fc_lif(self.fc(self.features(x))))
            )
        return torch.stack(outputs).mean(0)


NETWORKS = {"conv-small": ConvSmall, "resnet19": ResNet19}


def measure(
    workload, timesteps, batch, infer_batch, warmup, repeats, seed, precision
):
    return measure_torch(
        "snntorch",
        f"snntorch {snntorch.__version__}",
        lambda: NETWORKS[workload](timesteps),
        lambda net, x: net(x),
        (batch, infer_batch, warmup, repeats),
        seed,
        workload=workload,
        precision=precision,
    )


def main():
    peer_main(
        measure, __doc__.splitlines()[0], set_torch_threads, tuple(NETWORKS)
    )


if __name__ == "__main__":
    main()
