"""The one exception type for bad data and bad data settings."""


class DataError(ValueError):
    """Bad input data or data settings.

    The message is one line: where the problem is (file and line when there is
    one), what is wrong, and how to fix it.
    """
