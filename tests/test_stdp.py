"""Stochastic STDP for binary kernels: probabilities, updates, training."""

import keras
import numpy as np
import pytest

from keras_snn import stdp


def test_probabilities_follow_the_formula():
    rule = stdp.StochasticSTDP(
        p_potentiation=0.3,
        tau_potentiation=2.0,
        p_depression=0.1,
        tau_depression=4.0,
        dead_zone=(3.0, 5.0),
    )
    dt = np.array([0.0, 1.0, 2.9, 3.0, 4.0, 5.0, 7.0, np.inf, -1.0, -8.0])
    p_pot, p_dep = rule.probabilities(dt)
    expected_pot = [0.3, 0.3 * np.exp(-0.5), 0.3 * np.exp(-1.45)] + [0] * 7
    expected_dep = [0, 0, 0, 0, 0, 0]  # potentiation and dead zone
    expected_dep += [0.1 * (1 - np.exp(-0.5)), 0.1]  # anti-Hebbian (S3)
    expected_dep += [0.1 * np.exp(-0.25), 0.1 * np.exp(-2.0)]  # (S4)
    np.testing.assert_allclose(p_pot, expected_pot, rtol=1e-12)
    np.testing.assert_allclose(p_dep, expected_dep, rtol=1e-12, atol=0)
    # The module-level function is the same rule.
    np.testing.assert_allclose(
        stdp.stdp_probabilities(dt, 0.3, 2.0, 0.1, 4.0, (3.0, 5.0))[1],
        p_dep,
    )


def test_update_switches_with_the_given_probabilities():
    rng = np.random.default_rng(0)
    n = 200_000
    zeros = np.zeros(n, "uint8")
    ones = np.ones(n, "uint8")
    after = stdp.stdp_update(zeros, 0.25, 0.0, rng.random(n))
    assert after.mean() == pytest.approx(0.25, abs=0.005)
    after = stdp.stdp_update(ones, 0.0, 0.4, rng.random(n))
    assert 1 - after.mean() == pytest.approx(0.4, abs=0.005)
    # Potentiation never touches a 1, depression never a 0.
    assert stdp.stdp_update(ones, 1.0, 0.0, rng.random(n)).min() == 1
    assert stdp.stdp_update(zeros, 0.0, 1.0, rng.random(n)).max() == 0


def test_timing_differences():
    pre = np.zeros((6, 4))
    pre[1, 0] = pre[3, 0] = 1  # latest pre spike before t_post=4 is 3
    pre[5, 1] = 1  # only after: dt = 4 - 5 = -1
    pre[4, 2] = 1  # simultaneous: dt = 0
    dt = stdp._timing(pre, 4)
    np.testing.assert_array_equal(dt, [1.0, -1.0, 0.0, np.inf])


def test_invalid_rule_arguments():
    with pytest.raises(ValueError, match="p_potentiation"):
        stdp.StochasticSTDP(p_potentiation=1.5)
    with pytest.raises(ValueError, match="dead_zone"):
        stdp.StochasticSTDP(dead_zone=(4.0, 2.0))
    with pytest.raises(ValueError, match="tau_depression"):
        stdp.StochasticSTDP(tau_depression=0)


def test_layerwise_training_and_readout_model():
    rng = np.random.default_rng(0)
    images = rng.random((12, 8, 8, 2)).astype("float32")
    trained = stdp.train_layerwise(
        images,
        [{"filters": 4}, {"filters": 3, "kernel_size": 2, "pool_size": 1}],
        timesteps=4,
        seed=0,
    )
    assert trained[0]["kernel"].shape == (3, 3, 2, 4)
    assert trained[1]["kernel"].shape == (2, 2, 4, 3)
    assert set(np.unique(trained[0]["kernel"])) <= {0, 1}
    memory = stdp.kernel_memory(trained)
    weights = 3 * 3 * 2 * 4 + 2 * 2 * 4 * 3
    assert memory["weights"] == weights
    assert memory["compression"] == pytest.approx(32 * weights / (weights + 64))
    model = stdp.binary_snn(trained, (8, 8, 2), 3, timesteps=4, seed=0)
    assert model.output_shape == (None, 3)
    frozen = [w for w in model.non_trainable_weights if "kernel" in w.path]
    assert len(frozen) == 2
    model.compile(
        "adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    before = [w.numpy().copy() for w in frozen]
    model.fit(images, np.arange(12) % 3, epochs=1, verbose=0)
    for old, new in zip(before, frozen, strict=True):
        np.testing.assert_array_equal(old, new.numpy())


def test_train_layerwise_errors():
    images = np.zeros((2, 4, 4, 1), "float32")
    with pytest.raises(ValueError, match="layers"):
        stdp.train_layerwise(images, [])
    with pytest.raises(ValueError, match="padding"):
        stdp.train_layerwise(images, [{"filters": 2, "padding": "full"}])
    with pytest.raises(ValueError, match="images"):
        stdp.train_layerwise(images[0], [{"filters": 2}])


def test_thresholds_of_trained_and_random_layers():
    images = np.random.default_rng(0).random((4, 6, 6, 2)).astype("float32")
    trained = stdp.train_layerwise(
        images,
        [{"filters": 3}],
        timesteps=4,
        threshold=1.4,
        inference_threshold=1.0,
        seed=0,
    )
    assert trained[0]["threshold"] == 1.0
    default = stdp.train_layerwise(
        images, [{"filters": 3}], timesteps=4, threshold=1.4, seed=0
    )
    assert default[0]["threshold"] == 1.4
    spec = [{"filters": 3}, {"filters": 2, "pool_size": 1}]
    layers = stdp.random_binary_layers(spec, 2, threshold=1.0, seed=0)
    assert [layer["threshold"] for layer in layers] == [1.0, 1.0]
    assert layers[1]["kernel"].shape == (3, 3, 3, 2)
    with pytest.raises(ValueError, match="target_rate"):
        stdp.train_layerwise(images, [{"filters": 2}], target_rate=1.5)
    with pytest.raises(ValueError, match="inference_threshold"):
        stdp.train_layerwise(images, [{"filters": 2}], inference_threshold=0)


def test_homeostasis_silences_a_map_that_fires_everywhere():
    # A uniform image: ON inputs always fire, OFF inputs never. Without
    # threshold adaptation the map learns the ON pattern (S1 for ON, S3
    # for the silent OFF inputs); with Eq. (H) and target rate 0 its
    # threshold rises above reach after the first image, so it stops
    # learning.
    images = np.concatenate(
        [np.ones((30, 5, 5, 1)), np.zeros((30, 5, 5, 1))], axis=-1
    ).astype("float32")

    def kernel(homeostasis):
        trained = stdp.train_layerwise(
            images,
            [{"filters": 1}],
            timesteps=8,
            threshold=0.1,
            homeostasis=homeostasis,
            target_rate=0.0,
            dropout=0.0,
            seed=0,
        )
        return trained[0]["kernel"][..., 0]

    learnt = kernel(0.0)
    assert learnt[..., 0].all() and not learnt[..., 1].any()
    frozen = kernel(5.0)
    assert not frozen[..., 0].all() and frozen[..., 1].any()
