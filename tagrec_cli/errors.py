"""The one error type people see: a message that says what is wrong and how to fix it."""


class TagrecError(Exception):
    """Shown to the user as one line on stderr; the CLI exits with status 1."""


class DataError(TagrecError):
    """Input data is missing, malformed or out of range (names the file, line or column)."""


class ArtifactError(TagrecError):
    """A workspace artifact is missing or was written by an incompatible version."""
