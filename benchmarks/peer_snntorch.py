"""conv-small in snnTorch, timed for benchmarks/peers.py (own process).

The network of issue #8 written as in snnTorch's tutorials: `snn.Leaky`
neurons and a Python loop over time that applies every layer at every step:

    for t in range(T):
        conv1 -> bn1 -> Leaky -> avgpool -> conv2 -> bn2 -> Leaky -> avgpool
        -> flatten -> fc1 (256) -> Leaky -> fc2 (10)
    logits = mean over time of fc2's output

`Leaky(beta=0.5, threshold=1.0, reset_mechanism="zero")` is the hard-reset
LIF with decay 0.5 (snnTorch's default surrogate, `atan`). Cross-entropy,
Adam(lr=1e-3). Imports only torch and snntorch. Prints one JSON line:

    PEER_RESULT {"train_samples_per_s": ..., "infer_samples_per_s": ...,
                 "peak_rss_mb": ..., ...}

Run (from the repository root, in the peers' venv):

    .venv-peers/bin/python benchmarks/peer_snntorch.py --timesteps 4
"""

import snntorch
import torch
from bench_common import measure_steps
from bench_common import peer_main
from bench_common import set_torch_threads
from torch import nn


class ConvSmall(nn.Module):
    def __init__(self, timesteps):
        super().__init__()
        self.timesteps = timesteps
        leaky = dict(beta=0.5, threshold=1.0, reset_mechanism="zero")
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(32)
        self.lif1 = snntorch.Leaky(**leaky)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(64)
        self.lif2 = snntorch.Leaky(**leaky)
        self.fc1 = nn.Linear(64 * 7 * 7, 256)
        self.lif3 = snntorch.Leaky(**leaky)
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


def measure(timesteps, batch, infer_batch, warmup, repeats, seed):
    torch.manual_seed(seed)
    net = ConvSmall(timesteps)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, 1, 28, 28, generator=generator)
    y = torch.randint(0, 10, (batch,), generator=generator)
    x_infer = torch.rand(infer_batch, 1, 28, 28, generator=generator)

    def train_step():
        optimizer.zero_grad()
        loss = loss_fn(net(x), y)
        loss.backward()
        optimizer.step()
        return loss.item()

    def infer_step():
        with torch.no_grad():
            return net(x_infer).sum().item()

    return measure_steps(
        "snntorch",
        f"snntorch {snntorch.__version__}, torch {torch.__version__}",
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
