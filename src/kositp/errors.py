"""The one exception type the CLI turns into a one-line message and a non-zero exit code."""


class KositpError(Exception):
    """A problem the user can fix (bad input, missing file, offline model id): shown without a traceback."""

    exit_code = 2
