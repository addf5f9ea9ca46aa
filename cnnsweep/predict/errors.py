"""The one input error of `cnnsweep predict` (the CLI prints it on one line and exits 2)."""


class PredictError(ValueError):
    """A model path or an input that cannot be used (missing, not an image, unknown dataset, ...)."""
