"""Every public layer through the one layer harness (tests/layer_harness.py)."""

from layer_harness import CASES
from layer_harness import harness_tests

from keras_snn import layers

NAMES = sorted(CASES)


def test_every_public_layer_has_a_case():
    assert sorted(layers.__all__) == NAMES


(
    test_config_round_trip,
    test_xla_gives_the_eager_outputs,
    test_mixed_precision,
    harness_archives,
    test_keras_archive_loads_in_a_fresh_process,
) = harness_tests(CASES, "layers")
