"""from_spec (Wu et al. 2019 notation) and the spiking ResNets."""

import math

import keras
import numpy as np
import pytest

from keras_snn import layers
from keras_snn import models

TABLE_NETWORKS = sorted(
    key for key in models.PAPER_NETWORKS if key.startswith("wu2019")
)


def expected_params(spec, input_shape=(32, 32, 3), classes=10, pop=10):
    """Hand count for norm=None: conv k*k*in*out + out, fc in*out + out."""
    h, w, c = input_shape
    total, kernel, flat = 0, None, None
    for token in spec.split("-"):
        token = token.replace("(Encoding)", "")
        if token.startswith(("AP", "MP")):
            h, w = h // int(token[2:]), w // int(token[2:])
        elif token.endswith("FC"):
            units = int(token[:-2])
            inputs = flat if flat is not None else h * w * c
            total += inputs * units + units
            flat = units
        elif token == "Voting":
            inputs = flat if flat is not None else h * w * c
            total += inputs * classes * pop + classes * pop
        else:
            filters, _, k = token.partition("C")
            kernel = int(k) if k else kernel
            total += kernel * kernel * c * int(filters) + int(filters)
            c = int(filters)
    return total


def test_hand_count_of_one_network():
    # 128C3: 3*9*128+128; 256C3 on 16x16: 128*9*256+256;
    # 256FC on 8*8*256; Voting 256 -> 100.
    assert expected_params(
        models.PAPER_NETWORKS["wu2019_table1_static_small"]
    ) == 3584 + 295168 + (16384 * 256 + 256) + (256 * 100 + 100)


@pytest.mark.parametrize("key", TABLE_NETWORKS)
def test_paper_tables_build_with_expected_parameter_counts(key):
    spec = models.PAPER_NETWORKS[key]
    model = models.from_spec(
        spec, input_shape=(32, 32, 3), timesteps=2, num_classes=10
    )
    count = model.count_params()
    print(f"{key}: {spec}: {count:,} parameters")
    assert count == expected_params(spec)
    assert tuple(model.output.shape) == (None, 10)


@pytest.mark.parametrize("norm", [None, "tdbn", "bn", "neunorm"])
@pytest.mark.parametrize("head", ["Voting", "Decoding", "Readout"])
def test_norms_and_heads_run(norm, head):
    model = models.from_spec(
        f"8C3(Encoding)-AP2-8C3-MP2-16FC-{head}",
        input_shape=(8, 8, 1),
        timesteps=3,
        num_classes=4,
        norm=norm,
        neuron_kwargs={"threshold": 0.5},
    )
    x = np.random.default_rng(0).uniform(size=(2, 8, 8, 1)).astype("f4")
    out = model(x, training=True)
    assert out.shape == (2, 4)
    kinds = {type(layer).__name__ for layer in model.layers}
    expected = {
        "tdbn": "TDBatchNormalization",
        "neunorm": "NeuNorm",
        "bn": "TimeFolded",
    }
    if norm:
        assert expected[norm] in kinds
    if norm == "bn":
        inner = [
            type(layer.layer).__name__
            for layer in model.layers
            if isinstance(layer, layers.TimeFolded)
        ]
        assert "BatchNormalization" in inner


def test_event_frames_and_if_neurons():
    model = models.from_spec(
        "4C3-AP2-8FC-Decoding",
        input_shape=(5, 8, 8, 2),
        num_classes=3,
        neuron="if",
    )
    neurons = [layer for layer in model.layers if isinstance(layer, layers.IF)]
    assert len(neurons) == 2
    assert model(np.ones((1, 5, 8, 8, 2), "f4")).shape == (1, 3)


def test_bare_number_takes_previous_kernel():
    parsed = models.parse_spec("16C5-AP2-32-Decoding")
    assert parsed[2] == {"kind": "conv", "filters": 32, "kernel": 5}


@pytest.mark.parametrize(
    "spec,pattern",
    [
        ("128C3-AP2-12X3-Voting", r"token 3 \('12X3'\) at character 10"),
        ("128C3-Voting-AP2", "must be the last token"),
        ("128C3-AP2-64C3(Encoding)-Decoding", "first layer only"),
        ("128C3-AP2", "must end with a head"),
        ("256-AP2-Voting", "needs an earlier convolution"),
        ("", "non-empty"),
        # A pool larger than the map it receives names the token and the
        # map's size (Keras' own error names neither).
        (
            "8C3-AP20-Decoding",
            r"20x20 cannot apply to the 8x8 feature map: token 2 "
            r"\('AP20'\) at character 4",
        ),
        ("8C3-AP2-AP2-AP2-MP2-Readout", r"2x2 .* 1x1 .* token 5 \('MP2'\)"),
        (
            "16FC-AP2-Decoding",
            r"pooling layer cannot follow an FC layer: token 2 \('AP2'\)",
        ),
        ("16FC-8C3-Voting", r"cannot follow an FC layer: token 2 \('8C3'\)"),
        # No spiking layer at all: refused before anything is trained.
        ("Decoding", "'Decoding' has no spiking layer"),
        ("AP2-Readout", "'AP2-Readout' has no spiking layer"),
    ],
)
def test_bad_spec_errors(spec, pattern):
    with pytest.raises(models.SpecError, match=pattern):
        models.from_spec(spec, (8, 8, 1), num_classes=2, timesteps=2)


def test_parse_spec_refuses_a_network_without_spiking_layer():
    with pytest.raises(models.SpecError, match="add a convolution"):
        models.parse_spec("MP2-Decoding")
    # The Voting head is itself a layer of spiking neurons.
    assert models.parse_spec("Voting") == [{"kind": "head", "head": "Voting"}]


def test_largest_pool_that_fits_is_accepted():
    model = models.from_spec(
        "4C3-AP8-Readout", (8, 8, 1), num_classes=2, timesteps=1
    )
    assert tuple(model.get_layer("pool0").output.shape) == (None, 1, 1, 1, 4)


@pytest.mark.parametrize(
    "kwargs,pattern",
    [
        ({"norm": "layernorm"}, "norm='layernorm'"),
        ({"neuron": "izhikevich"}, "neuron='izhikevich'"),
        ({"timesteps": None}, "timesteps=None"),
        ({"num_classes": 0}, "num_classes=0"),
        ({"voting_population": 0}, "voting_population=0"),
        ({"dropout": 1.0}, "dropout=1.0"),
        ({"input_shape": (8, 8)}, r"input_shape=\(8, 8\)"),
    ],
)
def test_bad_arguments(kwargs, pattern):
    args = {
        "spec": "4C3-8FC-Voting",
        "input_shape": (8, 8, 1),
        "num_classes": 2,
        "timesteps": 2,
    }
    args.update(kwargs)
    with pytest.raises(ValueError, match=pattern):
        models.from_spec(**args)


def test_residual_block_alphas_and_shapes():
    inputs = keras.Input((2, 8, 8, 4))
    out = models.residual_block(inputs, 8, stride=2, name="b")
    model = keras.Model(inputs, out)
    assert tuple(out.shape) == (None, 2, 4, 4, 8)
    alphas = {
        layer.name: layer.alpha
        for layer in model.layers
        if isinstance(layer, layers.TDBatchNormalization)
    }
    assert alphas["b_0_tdbn"] == 1.0
    assert alphas["b_1_tdbn"] == pytest.approx(1 / math.sqrt(2))
    assert alphas["b_shortcut_tdbn"] == pytest.approx(1 / math.sqrt(2))
    assert "b_shortcut_conv" in [layer.name for layer in model.layers]
    # Identity shortcut when the shape does not change.
    same = models.residual_block(keras.Input((2, 8, 8, 8)), 8, name="c")
    assert tuple(same.shape) == (None, 2, 8, 8, 8)


@pytest.mark.parametrize(
    "depth,input_shape,convs",
    [
        (17, (32, 32, 2), 15),
        (19, (32, 32, 3), 17),
        (34, (64, 64, 3), 33),
        (50, (64, 64, 3), 49),
    ],
)
def test_spiking_resnet_depths(depth, input_shape, convs):
    model = models.spiking_resnet(
        depth, input_shape=input_shape, num_classes=10, timesteps=1
    )
    conv_layers = [
        layer
        for layer in model.layers
        if isinstance(layer, layers.TimeFolded)
        and isinstance(layer.layer, keras.layers.Conv2D)
        and "shortcut" not in layer.name
    ]
    dense = 2 if depth in (17, 19) else 1
    assert len(conv_layers) == convs
    assert len(conv_layers) + dense == depth
    assert tuple(model.output.shape) == (None, 10)


def test_resnet_errors():
    with pytest.raises(ValueError, match="depth=18"):
        models.spiking_resnet(18, (32, 32, 3), 10, timesteps=2)
    with pytest.raises(ValueError, match="large=True"):
        models.spiking_resnet(19, (32, 32, 3), 10, timesteps=2, large=True)


def test_spec_model_round_trip(tmp_path):
    model = models.from_spec(
        "4C3(Encoding)-AP2-8FC-Voting",
        (8, 8, 1),
        num_classes=3,
        timesteps=2,
        norm="tdbn",
        voting_population=2,
    )
    path = tmp_path / "spec.keras"
    model.save(path)
    x = np.random.default_rng(1).uniform(size=(2, 8, 8, 1)).astype("f4")
    np.testing.assert_allclose(
        keras.models.load_model(path)(x), model(x), rtol=1e-6
    )


def test_dropout_mask_is_shared_across_time():
    model = models.from_spec(
        "16FC-Decoding", (4, 4, 1), num_classes=2, timesteps=3, dropout=0.5
    )
    drop = model.get_layer("dropout")
    spikes = np.ones((64, 3, 16), "float32")
    out = drop(spikes, training=True).numpy()
    assert 0.3 < (out == 0).mean() < 0.7
    np.testing.assert_array_equal(out[:, 0], out[:, 1])
    np.testing.assert_array_equal(drop(spikes, training=False), spikes)
