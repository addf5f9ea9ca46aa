"""The one exception type of `cnnsweep.data`."""


class DataError(ValueError):
    """A data problem phrased for a person (missing file, bad pickle, wrong shape).

    A ValueError, so the CLI can catch it with the config errors, print the message and exit 2
    instead of showing a traceback.
    """
