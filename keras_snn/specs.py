"""The papers' network notation: `parse_spec` and `PAPER_NETWORKS`.

Wu et al. 2019 (Tables 1-2) write networks as strings of tokens such as
`"128C3(Encoding)-AP2-128C3-AP2-512FC-Voting"`; `parse_spec` reads them
into layer descriptions and `keras_snn.models.from_spec` builds the model.
"""

import re

__all__ = [
    "HEADS",
    "LEARNABLE_SHAPES",
    "PAPER_NETWORKS",
    "SpecError",
    "parse_spec",
]

HEADS = ("Voting", "Decoding", "Readout")
# The shapes of a trainable neuron parameter (`trainable_decay`,
# `trainable_threshold`); here, free of TensorFlow, for the CLI's choices.
LEARNABLE_SHAPES = ("layer", "channel", "neuron")

# The network strings printed in the papers. Wu et al. 2019 Table 1 writes
# "256" for the third layer of the middle neuromorphic network; `from_spec`
# reads a bare number as a convolution with the previous kernel size.
# Wu et al. 2021 (ASF-BP) names LeNet and VGG7 ("two convolution layers, two
# pooling layers and two fully connected layers"; "five convolution layers,
# two pooling layers and two fully connected layers") without channel
# counts: the counts below are keras_snn's choice.
PAPER_NETWORKS = {
    "wu2019_table1_neuromorphic_small": (
        "128C3(Encoding)-AP2-128C3-AP2-512FC-Voting"
    ),
    "wu2019_table1_neuromorphic_middle": (
        "128C3(Encoding)-128C3-AP2-256-AP2-1024FC-Voting"
    ),
    "wu2019_table1_neuromorphic_large": (
        "128C3(Encoding)-128C3-AP2-384C3-384C3-AP2-1024FC-512FC-Voting"
    ),
    "wu2019_table1_static_small": (
        "128C3(Encoding)-AP2-256C3-AP2-256FC-Voting"
    ),
    "wu2019_table1_static_middle": (
        "128C3(Encoding)-AP2-256C3-512C3-AP2-512FC-Voting"
    ),
    "wu2019_table1_static_large": (
        "128C3(Encoding)-256C3-AP2-512C3-AP2-1024C3-512C3-1024FC-512FC-Voting"
    ),
    "wu2019_table2_neuromorphic": (
        "128C3(Encoding)-128C3-AP2-128C3-256C3-AP2-1024FC-Voting"
    ),
    "wu2019_table2_alexnet": (
        "96C3(Encoding)-256C3-AP2-384C3-AP2-384C3-256C3-1024FC-1024FC-Voting"
    ),
    "wu2019_table2_cifarnet": (
        "128C3(Encoding)-256C3-AP2-512C3-AP2-1024C3-512C3-1024FC-512FC-Voting"
    ),
    "wu2021_lenet": "20C5(Encoding)-AP2-50C5-AP2-500FC-Readout",
    "wu2021_vgg7": (
        "64C3(Encoding)-128C3-AP2-256C3-256C3-256C3-AP2-1024FC-Readout"
    ),
}


class SpecError(ValueError):
    """A network string that `parse_spec` cannot read."""


_CONV = re.compile(r"^(\d+)C(\d+)(\(Encoding\))?$")
_BARE = re.compile(r"^(\d+)(\(Encoding\))?$")
_POOL = re.compile(r"^(AP|MP)(\d+)$")
_DENSE = re.compile(r"^(\d+)FC$")


def parse_spec(spec):
    """Parses the papers' notation into a list of layer descriptions.

    Tokens, separated by `-`:

    - `128C3`: convolution with 128 filters of 3x3, "same" padding;
      `(Encoding)` may mark the first one (Wu et al. 2019's encoding
      layer). A bare number (`256`, as printed in Table 1) is a
      convolution with the previous convolution's kernel size.
    - `AP2` / `MP2`: 2x2 average / max pooling with stride 2.
    - `512FC`: fully connected layer of 512 neurons.
    - `Voting`, `Decoding`, `Readout`: the output head, last token only.

    Args:
        spec: str, e.g. `"128C3(Encoding)-AP2-128C3-AP2-512FC-Voting"`.

    Returns:
        A list of dicts with key `"kind"` (`"conv"`, `"pool"`, `"dense"`,
        `"head"`) and the token's numbers.

    Raises:
        SpecError: naming the bad token, its position and what is accepted,
            or if the network has no spiking layer (only a pooling token
            and a `Decoding` or `Readout` head, for example).
    """
    return parse_with_places(spec)[0]


def parse_with_places(spec):
    """`parse_spec`, plus the position of each layer description in `spec`.

    Returns:
        `(parsed, places)`: the list of `parse_spec` and, for each of its
        items, a text such as "token 2 ('AP2') at character 6 of '...'" for
        error messages.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise SpecError(
            "Argument `spec` must be a non-empty network string such as "
            f"'128C3(Encoding)-AP2-512FC-Voting'. Received: spec={spec!r}"
        )
    tokens = spec.replace(" ", "").split("-")
    parsed = []
    places = []
    last_kernel = None
    offset = 0
    for index, token in enumerate(tokens):
        where = (
            f"token {index + 1} ({token!r}) at character {offset} of {spec!r}"
        )
        offset += len(token) + 1
        places.append(where)
        conv = _CONV.match(token)
        bare = _BARE.match(token)
        pool = _POOL.match(token)
        dense = _DENSE.match(token)
        if conv or bare:
            filters = int((conv or bare).group(1))
            if conv:
                kernel = int(conv.group(2))
            elif last_kernel is None:
                raise SpecError(
                    f"Bare number {token!r} ({where}) needs an earlier "
                    "convolution to take its kernel size from; write e.g. "
                    f"'{filters}C3'."
                )
            else:
                kernel = last_kernel
            encoding = token.endswith("(Encoding)")
            if encoding and index != 0:
                raise SpecError(
                    f"'(Encoding)' marks the first layer only; found at "
                    f"{where}."
                )
            if filters < 1 or kernel < 1:
                raise SpecError(f"Filters and kernel must be >= 1 at {where}.")
            last_kernel = kernel
            parsed.append(
                {"kind": "conv", "filters": filters, "kernel": kernel}
            )
        elif pool:
            size = int(pool.group(2))
            if size < 1:
                raise SpecError(f"Pool size must be >= 1 at {where}.")
            parsed.append({"kind": "pool", "type": pool.group(1), "size": size})
        elif dense:
            units = int(dense.group(1))
            if units < 1:
                raise SpecError(f"Units must be >= 1 at {where}.")
            parsed.append({"kind": "dense", "units": units})
        elif token in HEADS:
            if index != len(tokens) - 1:
                raise SpecError(
                    f"The head {token!r} must be the last token; found at "
                    f"{where}."
                )
            parsed.append({"kind": "head", "head": token})
        else:
            raise SpecError(
                f"Unknown {where}. Accepted tokens: <N>C<k> (convolution, "
                "optionally with '(Encoding)' on the first), AP<k>, MP<k>, "
                f"<N>FC, and a final head {list(HEADS)}."
            )
    if parsed[-1]["kind"] != "head":
        raise SpecError(
            f"The network string must end with a head {list(HEADS)}. "
            f"Received: spec={spec!r}"
        )
    if parsed[-1]["head"] != "Voting" and not any(
        item["kind"] in ("conv", "dense") for item in parsed
    ):
        raise SpecError(
            f"The network string {spec!r} has no spiking layer: its head "
            f"{parsed[-1]['head']!r} has no spiking neurons of its own, so "
            "add a convolution (<N>C<k>) or FC (<N>FC) token before it, "
            "e.g. '8C3-AP2-" + parsed[-1]["head"] + "', or use the "
            "'Voting' head (an FC layer of spiking neurons)."
        )
    return parsed, places
