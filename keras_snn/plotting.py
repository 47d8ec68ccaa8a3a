"""PNG plots of training curves and spiking activity (needs matplotlib).

matplotlib is optional (`pip install keras-snn[plots]`); it is imported when
a plot is drawn, with the non-interactive Agg backend. Each function writes
its figure atomically through `keras_snn.fileio` (a temporary file in the
same folder, then renamed); a folder that cannot be written raises
`keras_snn.fileio.OutputError`, naming it.
"""

import os

import numpy as np

from keras_snn import fileio

__all__ = [
    "plot_accuracy_vs_time",
    "plot_firing_rates",
    "plot_history",
    "plot_raster",
]


def _pyplot():
    try:
        import matplotlib
    except ImportError as err:
        raise ImportError(
            "Plotting needs matplotlib: pip install 'keras-snn[plots]'"
        ) from err
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path):
    plt = _pyplot()
    path = os.fspath(path)
    try:
        fileio.ensure_folder(os.path.dirname(os.path.abspath(path)))
        with fileio.atomic_path(path) as temporary:
            fig.savefig(temporary, format="png", dpi=100, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path


def plot_history(history, path):
    """Loss and metric curves per epoch, training and validation.

    Args:
        history: dict from metric name to a list of per-epoch values (a
            Keras `History.history`).
        path: where to write the PNG.

    Returns:
        The path written.

    Raises:
        ImportError: if matplotlib is not installed.
        OutputError: (an `OSError`, `keras_snn.fileio`) if the file cannot
            be written; the message names it, its folder and the cause.
    """
    plt = _pyplot()
    names = [k for k in history if not k.startswith("val_")]
    fig, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 3.5))
    axes = np.atleast_1d(axes)
    for ax, name in zip(axes, names, strict=True):
        epochs = np.arange(1, len(history[name]) + 1)
        ax.plot(epochs, history[name], marker="o", label="train")
        if f"val_{name}" in history:
            ax.plot(epochs, history[f"val_{name}"], marker="o", label="val")
        ax.set_xlabel("epoch")
        ax.set_title(name)
        ax.grid(alpha=0.3)
        ax.legend()
    return _save(fig, path)


def plot_accuracy_vs_time(curves, path, target=None):
    """Accuracy against training time, one line per run.

    Args:
        curves: dict from a run's label to `(minutes, accuracy)`, two
            sequences of equal length (e.g. the cumulative sum of the
            history's `epoch_seconds` / 60 and its `val_accuracy`).
        path: where to write the PNG.
        target: optional accuracy drawn as a dashed horizontal line.

    Returns:
        The path written.

    Raises:
        ValueError: no curve, or a curve whose sequences differ in length.
        ImportError: if matplotlib is not installed.
        OutputError: if the file cannot be written.
    """
    if not curves:
        raise ValueError("Argument `curves` must hold at least one run.")
    for label, (minutes, accuracy) in curves.items():
        if len(minutes) != len(accuracy) or not len(minutes):
            raise ValueError(
                f"Curve {label!r}: `minutes` and `accuracy` must be non-empty "
                f"and of equal length. Received: {len(minutes)} and "
                f"{len(accuracy)} values."
            )
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, (minutes, accuracy) in curves.items():
        ax.plot(minutes, accuracy, marker="o", markersize=3, label=label)
    if target is not None:
        ax.axhline(target, color="gray", linestyle="--", label=f"{target:g}")
    ax.set_xlabel("training time (minutes)")
    ax.set_ylabel("test accuracy")
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, path)


def plot_firing_rates(rates, path):
    """Bar chart of the mean firing rate of each spiking layer.

    Args:
        rates: dict from layer name to firing rate (spikes/neuron/step), as
            returned by `keras_snn.analysis.firing_rates`.
        path: where to write the PNG.

    Returns:
        The path written.

    Raises:
        ImportError: if matplotlib is not installed.
        OutputError: (an `OSError`, `keras_snn.fileio`) if the file cannot
            be written; the message names it, its folder and the cause.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(1.2 * len(rates) + 2.5, 3.5))
    ax.bar(list(rates), list(rates.values()), color="tab:orange")
    ax.set_ylabel("spikes / neuron / step")
    ax.set_title("firing rate per layer")
    ax.tick_params(axis="x", rotation=30)
    return _save(fig, path)


def plot_raster(trains, path, max_neurons=64):
    """Spike raster of one sample: one panel per layer, neuron vs time.

    Args:
        trains: dict from layer name to spikes of ONE sample shaped
            `(time, ...)`; features are flattened.
        path: where to write the PNG.
        max_neurons: int, the first `max_neurons` neurons of each layer are
            drawn. Defaults to `64`.

    Returns:
        The path written.

    Raises:
        ImportError: if matplotlib is not installed.
        OutputError: (an `OSError`, `keras_snn.fileio`) if the file cannot
            be written; the message names it, its folder and the cause.
    """
    plt = _pyplot()
    fig, axes = plt.subplots(
        1, len(trains), figsize=(3.2 * len(trains), 3.5), squeeze=False
    )
    for ax, (name, spikes) in zip(axes[0], trains.items(), strict=True):
        spikes = np.asarray(spikes).reshape(spikes.shape[0], -1)[
            :, :max_neurons
        ]
        steps, neurons = np.nonzero(spikes)
        ax.scatter(steps, neurons, marker="|", s=40, color="black")
        ax.set_xlim(-0.5, spikes.shape[0] - 0.5)
        ax.set_ylim(-0.5, spikes.shape[1] - 0.5)
        ax.set_xlabel("time step")
        ax.set_title(name)
    axes[0][0].set_ylabel("neuron")
    return _save(fig, path)
