"""Export targets of `edge.export`, one sub-package each."""
