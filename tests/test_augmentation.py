"""`keras_snn.training.augmentation`: flips, shifts and random erasing
(Zhong et al. 2020, Algorithm 1), each drawn from the example's seed only.
"""

import numpy as np
import pytest
import tensorflow as tf

from keras_snn import cli
from keras_snn import training

H, W, C = 12, 10, 2
SEEDS = range(200)


def image():
    """Distinct values, so that a moved pixel shows where it came from."""
    return tf.reshape(tf.range(1, H * W * C + 1, dtype=tf.float32), (H, W, C))


def run(augment, seed, x=None):
    x = image() if x is None else x
    out, label = augment(x, tf.constant(3), tf.constant([7, seed]))
    assert int(label) == 3
    return out.numpy()


def shifted(x, dy, dx):
    """`x` moved by `(dy, dx)` pixels with zeros coming in."""
    padded = np.pad(x, ((2, 2), (2, 2), (0, 0)))
    return padded[2 - dy : 2 - dy + H, 2 - dx : 2 - dx + W]


def test_flip_and_shift_are_a_mirror_and_a_translation():
    x = image().numpy()
    flips = {run(training.augmentation(flip=True), s).tobytes() for s in SEEDS}
    assert flips == {x.tobytes(), x[:, ::-1].tobytes()}
    moves = {
        (dy, dx): shifted(x, dy, dx).tobytes()
        for dy in range(-2, 3)
        for dx in range(-2, 3)
    }
    seen = set()
    for seed in SEEDS:
        out = run(training.augmentation(shift=2), seed).tobytes()
        matches = [move for move, shift in moves.items() if shift == out]
        assert len(matches) == 1, f"seed {seed}: not a shift of <= 2 pixels"
        seen.add(matches[0])
    assert len(seen) == 25  # every shift of the 5 x 5 is drawn


def erased_box(out, x):
    """The rows and columns of the pixels `out` changed from `x`."""
    changed = np.any(out != x, axis=-1)
    rows, cols = np.nonzero(changed)
    if not len(rows):
        return None
    return rows.min(), rows.max() + 1, cols.min(), cols.max() + 1


def test_erasing_fills_one_rectangle_of_the_papers_size_with_noise():
    x = -np.ones((28, 28, 1), np.float32)  # below the noise's [0, 1)
    augment = training.augmentation(erase=1.0)
    low, high = training.ERASE_AREA
    aspects = []
    for seed in SEEDS:
        out = run(augment, seed, tf.constant(x))
        top, bottom, left, right = erased_box(out, x)
        box = out[top:bottom, left:right]
        assert np.all((box >= 0) & (box < 1)), f"seed {seed}"
        # The changed pixels fill their bounding box: one rectangle.
        assert np.all(out[out != x] == box.ravel()), f"seed {seed}"
        rows, cols = bottom - top, right - left
        # Rounding each side to a whole pixel moves the area by at most
        # about half a row and half a column of pixels.
        slack = (rows + cols) / 2 + 1
        assert low * 28 * 28 - slack <= rows * cols <= high * 28 * 28 + slack
        aspects.append(rows / cols)
    # The aspect ratio spans [r_1, 1 / r_1] (up to rounding), both ways.
    r1 = training.ERASE_ASPECT
    assert r1 * 0.7 <= min(aspects) < 0.6 and 1.6 < max(aspects) <= 1.4 / r1


def test_erasing_happens_with_its_probability_and_keeps_the_rest():
    plain = training.augmentation(flip=True, shift=2)
    augment = training.augmentation(flip=True, shift=2, erase=0.5)
    erased = 0
    for seed in SEEDS:
        base, out = run(plain, seed), run(augment, seed)
        box = erased_box(out, base)
        if box is None:
            continue
        erased += 1
        top, bottom, left, right = box
        outside = np.ones((H, W), bool)
        outside[top:bottom, left:right] = False
        # The flip and shift are those of the same seed without erasing.
        np.testing.assert_array_equal(out[outside], base[outside])
    assert 70 <= erased <= 130  # 200 draws at p = 0.5
    assert training.augmentation(erase=0.0) is None


def test_the_same_seed_gives_the_same_image_in_a_dataset():
    x = np.random.default_rng(0).random((16, H, W, C), dtype=np.float32)
    y = np.arange(16)
    augment = training.augmentation(flip=True, shift=2, erase=0.5)

    def epoch(batches):
        return np.concatenate([b.numpy() for b, _ in batches.dataset()])

    first = epoch(training.EpochBatches(x, y, 8, seed=1, augment=augment))
    again = epoch(training.EpochBatches(x, y, 8, seed=1, augment=augment))
    other = epoch(training.EpochBatches(x, y, 8, seed=2, augment=augment))
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(erase=1.5), "erase=1.5"),
        (dict(erase=-0.1), "erase=-0.1"),
        (dict(shift=-1), "shift=-1"),
        (dict(shift=1.5), "shift=1.5"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        training.augmentation(**kwargs)


def test_cli_augment_takes_any_set_in_any_order(capsys):
    parser = cli._build_parser()

    def augment(text):
        args = parser.parse_args(["train", "--out", "o", "--augment", text])
        return args.augment

    assert augment("none") == "none"
    assert augment("shift+flip") == "flip+shift"
    assert augment("erase+shift+flip") == "flip+shift+erase"
    for bad in ("blur", "flip+flip", "flip+", "none+flip"):
        with pytest.raises(SystemExit):
            augment(bad)
        err = capsys.readouterr().err
        assert "argument --augment: must be none or flip, shift, erase" in err
        assert f"Received: '{bad}'" in err
