"""One exception type for every user-facing error: its message names the cause and the fix."""


class VizprobeError(Exception):
    """A problem with the user's input; the CLI prints it as one line, without a traceback."""
