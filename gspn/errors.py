"""The project's own error types. The `gspn` command prints any of them as one line naming the file,
key or argument and what was expected (`--debug` or GSPN_DEBUG=1 shows the traceback); each is also a
ValueError, so code that catches ValueError keeps working."""


class GSPNError(Exception):
    """A problem the user can fix from its message alone."""


class ConfigError(GSPNError, ValueError):
    """A setting is missing, misspelt, out of range or inconsistent with another."""


class DataError(GSPNError, ValueError):
    """A data file or folder is missing, unreadable or holds something other than expected."""


class CheckpointError(GSPNError, ValueError):
    """A checkpoint or weights file is missing, truncated, or made for another task or model."""


class NonFiniteError(GSPNError, ValueError):
    """Training met a non-finite loss or gradient."""
