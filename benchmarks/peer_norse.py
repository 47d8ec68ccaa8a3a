"""conv-small in Norse, timed for benchmarks/peers.py (own process).

The network of issue #8 written as Norse's documentation writes a
convolutional SNN: stateless torch layers and `norse.torch.LIFBoxCell`
neurons (a LIF without a synaptic current, the model of keras-snn's LIF)
in a Python loop over time that applies every layer at every step:

    for t in range(T):
        conv1 -> bn1 -> LIFBox -> avgpool -> conv2 -> bn2 -> LIFBox
        -> avgpool -> flatten -> fc1 (256) -> LIFBox -> fc2 (10)
    logits = mean over time of fc2's output

Norse integrates `dv/dt = tau_mem_inv (v_leak - v + i)` by Euler steps of
`dt`; `dt tau_mem_inv = 0.5` gives `v <- 0.5 v + 0.5 i`, a decay of 0.5
as in the other libraries (the input is scaled by 0.5, which changes
nothing of the work). Threshold 1.0, reset to 0 (hard reset), Norse's
default surrogate (SuperSpike). Cross-entropy, Adam(lr=1e-3). Imports only
torch and norse. Prints one JSON line:

    PEER_RESULT {"train_samples_per_s": ..., "infer_samples_per_s": ...,
                 "peak_rss_mb": ..., ...}

Run (from the repository root, in the peers' venv):

    .venv-peers/bin/python benchmarks/peer_norse.py --timesteps 4
"""

import importlib.metadata

import torch
from bench_common import measure_torch
from bench_common import peer_main
from bench_common import set_torch_threads
from norse.torch import LIFBoxCell
from norse.torch import LIFBoxParameters
from torch import nn

DT = 1e-3
DECAY = 0.5  # dt * tau_mem_inv


class ConvSmall(nn.Module):
    def __init__(self, timesteps):
        super().__init__()
        self.timesteps = timesteps
        parameters = LIFBoxParameters(
            tau_mem_inv=torch.tensor(DECAY / DT),
            v_th=torch.tensor(1.0),
            v_reset=torch.tensor(0.0),
        )
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(32)
        self.lif1 = LIFBoxCell(parameters, dt=DT)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(64)
        self.lif2 = LIFBoxCell(parameters, dt=DT)
        self.fc1 = nn.Linear(64 * 7 * 7, 256)
        self.lif3 = LIFBoxCell(parameters, dt=DT)
        self.fc2 = nn.Linear(256, 10)
        self.pool = nn.AvgPool2d(2)

    def forward(self, x):
        s1 = s2 = s3 = None  # Norse starts each cell's state at v_leak
        outputs = []
        for _ in range(self.timesteps):
            z1, s1 = self.lif1(self.bn1(self.conv1(x)), s1)
            z2, s2 = self.lif2(self.bn2(self.conv2(self.pool(z1))), s2)
            z3, s3 = self.lif3(self.fc1(self.pool(z2).flatten(1)), s3)
            outputs.append(self.fc2(z3))
        return torch.stack(outputs).mean(0)


def measure(
    workload, timesteps, batch, infer_batch, warmup, repeats, seed, precision
):
    return measure_torch(
        "norse",
        f"norse {importlib.metadata.version('norse')}",
        lambda: ConvSmall(timesteps),
        lambda net, x: net(x),
        (batch, infer_batch, warmup, repeats),
        seed,
        precision=precision,
    )


def main():
    peer_main(measure, __doc__.splitlines()[0], set_torch_threads)


if __name__ == "__main__":
    main()
