"""Every public layer through the one layer harness (tests/layer_harness.py)."""

import pytest
from layer_harness import CASES
from layer_harness import check_config_round_trip
from layer_harness import check_mixed_precision
from layer_harness import check_xla
from layer_harness import load_in_fresh_process
from layer_harness import save_models

from keras_snn import layers

NAMES = sorted(CASES)


def test_every_public_layer_has_a_case():
    assert sorted(layers.__all__) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_config_round_trip(name):
    check_config_round_trip(CASES[name])


@pytest.mark.parametrize("name", NAMES)
def test_xla_gives_the_eager_outputs(name):
    check_xla(CASES[name])


@pytest.mark.parametrize("name", NAMES)
def test_mixed_precision(name):
    case = CASES[name]
    if not case.mixed_precision:
        pytest.skip(f"{name} does not support mixed_float16")
    check_mixed_precision(case)


@pytest.fixture(scope="module")
def fresh_process_results(tmp_path_factory):
    directory = save_models(CASES, tmp_path_factory.mktemp("layers"))
    return load_in_fresh_process(directory)


@pytest.mark.parametrize("name", NAMES)
def test_keras_archive_loads_in_a_fresh_process(name, fresh_process_results):
    result = fresh_process_results[name]
    assert not isinstance(result, str), result
    assert result == 0.0
