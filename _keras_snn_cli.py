"""The `keras-snn` console script: arguments parsed before Keras is imported.

`import keras_snn` imports Keras and TensorFlow and registers every layer,
so that `keras.models.load_model` needs no `custom_objects`; that takes
seconds. A command line should answer `--help` or a mistyped option at
once, so the console script starts here, outside the package: while this
module's `DEFER_PACKAGE_IMPORTS` is true, `import keras_snn` (the parent of
`keras_snn.cli`) only sets its environment defaults, and `keras_snn.cli`
imports the rest (TensorFlow without its native log lines, then
`keras_snn.import_all()`) after parsing, for the commands that need it.

`python -m _keras_snn_cli ARGS` is the same as `keras-snn ARGS`.
"""

import sys

DEFER_PACKAGE_IMPORTS = True


def main(argv=None):
    """Runs `keras-snn` with `argv` (default: `sys.argv[1:]`).

    Returns the exit status of `keras_snn.cli.main`.
    """
    from keras_snn import cli

    return cli.main(argv)


if __name__ == "__main__":
    # Run as `python -m _keras_snn_cli`, this module is `__main__`: the
    # package looks for it under its own name.
    sys.modules.setdefault("_keras_snn_cli", sys.modules[__name__])
    sys.exit(main())
