"""Exceptions users can catch."""


class WclustError(Exception):
    """A user-facing error (bad source, bad option): the CLI prints its message, exit code 2."""


class FormatError(WclustError, ValueError):
    """A .wclust file is malformed, truncated, hostile or from an unsupported version."""
