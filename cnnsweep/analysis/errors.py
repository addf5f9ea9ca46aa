"""AnalysisError: a target or split the analysis cannot use (the CLI prints it in one line, exit 2)."""


class AnalysisError(ValueError):
    """Bad input for `cnnsweep analyze`: no such path, a folder that is no run, no usable split."""
