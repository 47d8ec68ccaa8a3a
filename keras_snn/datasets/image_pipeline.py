"""Static images to a batched `tf.data` pipeline: normalisation, augmentation.

`channel_stats` gives the exact per-channel mean and standard deviation of
a split; `pipeline` batches images with an optional seeded shuffle, the
random crop and flip of CIFAR-10 and the per-channel standardisation.
"""

import numpy as np
import tensorflow as tf


def channel_stats(images, scale):
    """Per-channel mean and standard deviation of `images / scale`.

    Exact, from a histogram of the integer values of each channel.
    """
    values = np.arange(256, dtype=np.float64) / scale
    means, stds = [], []
    for channel in range(images.shape[-1]):
        counts = np.bincount(images[..., channel].ravel(), minlength=256)
        total = counts.sum()
        mean = (counts * values).sum() / total
        var = (counts * (values - mean) ** 2).sum() / total
        means.append(mean)
        stds.append(np.sqrt(var))
    stds = np.maximum(np.array(stds, np.float32), 1e-7)
    return np.array(means, np.float32), stds


def _random_crop_flip(images, generator, padding=4):
    """Pads by `padding` zeros, crops back at random offsets, flips half.

    One offset and one flip per image, drawn from `generator`.
    """
    height, width = images.shape[1], images.shape[2]
    batch = tf.shape(images)[0]
    padded = tf.pad(
        images, [[0, 0], [padding, padding], [padding, padding], [0, 0]]
    )
    offsets = generator.uniform(
        [batch, 2], minval=0, maxval=2 * padding + 1, dtype=tf.int32
    )
    rows = offsets[:, :1] + tf.range(height)[None, :]
    cols = offsets[:, 1:] + tf.range(width)[None, :]
    flip = generator.uniform([batch, 1]) < 0.5
    cols = tf.where(flip, tf.reverse(cols, axis=[1]), cols)
    out = tf.gather(padded, rows, axis=1, batch_dims=1)
    out = tf.gather(out, cols, axis=2, batch_dims=1)
    out.set_shape(images.shape)
    return out


def pipeline(
    images,
    labels,
    scale,
    batch_size,
    shuffle,
    augment,
    stats,
    seed,
    drop_remainder,
):
    count = len(labels)
    with tf.device("/cpu:0"):
        images = tf.convert_to_tensor(images)
        labels = tf.convert_to_tensor(labels)
        generator = tf.random.Generator.from_seed(seed)
    if shuffle:
        # A new permutation on each pass: the generator's state advances.
        index = tf.data.Dataset.from_tensors(0).map(
            lambda _: tf.argsort(generator.uniform([count]))
        )
        index = index.unbatch().apply(
            tf.data.experimental.assert_cardinality(count)
        )
    else:
        index = tf.data.Dataset.range(count)
    dataset = index.batch(batch_size, drop_remainder=drop_remainder)
    mean = std = None
    if stats is not None:
        mean = tf.constant(stats[0])
        std = tf.constant(stats[1])

    def prepare(batch_index):
        x = tf.cast(tf.gather(images, batch_index), tf.float32) / scale
        if augment:
            x = _random_crop_flip(x, generator)
        if mean is not None:
            x = (x - mean) / std
        return x, tf.gather(labels, batch_index)

    # Sequential map: the generator is drawn in a fixed order.
    return dataset.map(prepare).prefetch(tf.data.AUTOTUNE)
