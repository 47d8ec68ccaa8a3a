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

import argparse
import json
import resource
import statistics
import time

import snntorch
import torch
from torch import nn

RESULT_PREFIX = "PEER_RESULT "


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

    net.train()
    train_times, train_cpu, loss = timed(train_step, warmup, repeats)
    net.eval()
    infer_times, infer_cpu, _ = timed(infer_step, warmup, repeats)
    return summary(
        "snntorch",
        snntorch.__version__,
        batch,
        infer_batch,
        (train_times, train_cpu),
        (infer_times, infer_cpu),
        loss,
    )


def timed(fn, warmup, repeats):
    value = None
    for _ in range(warmup):
        value = fn()
    times, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        value = fn()
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return times, cpu, value


def summary(name, version, batch, infer_batch, train, infer, loss):
    """Throughput from wall-clock and from CPU time per step.

    The CPU-time figure, batch / (median CPU seconds per step / threads),
    is what the step would reach with its threads fully busy; on a loaded
    machine it varies less than the wall-clock one.
    """
    (train_times, train_cpu), (infer_times, infer_cpu) = train, infer
    threads = torch.get_num_threads()
    return {
        "library": name,
        "version": f"{name} {version}, torch {torch.__version__}",
        "threads": threads,
        "train_samples_per_s": batch / statistics.median(train_times),
        "infer_samples_per_s": infer_batch / statistics.median(infer_times),
        "train_cpu_samples_per_s": batch
        * threads
        / statistics.median(train_cpu),
        "infer_cpu_samples_per_s": infer_batch
        * threads
        / statistics.median(infer_cpu),
        "train_step_s": train_times,
        "infer_step_s": infer_times,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        / 1024.0,
        "loss": float(loss),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timesteps", type=int, default=4)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--infer-batch", type=int, default=256)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    result = measure(
        args.timesteps,
        args.batch,
        args.infer_batch,
        args.warmup,
        args.repeats,
        args.seed,
    )
    print(RESULT_PREFIX + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
