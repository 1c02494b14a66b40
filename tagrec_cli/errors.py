"""The one error type people see: a message that says what is wrong and how to fix it."""


class TagrecError(Exception):
    """Shown to the user as one line on stderr; the CLI exits with status 1.

    names: the options the message names by their parameter names ("like_threshold",
    "title"; every appearance of such a word in the message is the option), so that each
    front end spells them its own way: the CLI as its options ("--like-threshold",
    "--title"), the API as its query parameters ("title").
    """

    def __init__(self, message: str = "", names: tuple[str, ...] = ()):
        super().__init__(message)
        self.names = names


class DataError(TagrecError):
    """Input data is missing, malformed or out of range (names the file, line or column)."""


class ArtifactError(TagrecError):
    """A workspace artifact is missing or was written by an incompatible version."""


class SettingError(TagrecError, ValueError):
    """A setting (config.py) is out of range or conflicts with another: a combination the
    CLI's per-option checks cannot see reaches the user as one line, not a traceback."""


class QueryError(TagrecError):
    """One value of a query is wrong: an unknown user or movie, tags that hold no tag, an
    empty or unmatched title. Raised once, where the rule lives; each front end words it.

    parameter: which value ("user", "movie", "tags", "title", "unrated"); unknown: it names
    nothing the workspace has (the API answers 404), else it is malformed (400).
    """

    def __init__(self, message: str = "", parameter: str = "", unknown: bool = False,
                 names: tuple[str, ...] = ()):
        super().__init__(message, names)
        self.parameter = parameter
        self.unknown = unknown


QUOTE_LIMIT = 80  # characters of user input an error message quotes at most


def quoted(text: str, limit: int = QUOTE_LIMIT) -> str:
    """repr() of user input for a message, cut to `limit` characters: a 1 MB tag gives a
    one-line error, not a 1 MB one.

    Example: quoted("x" * 100, 10) -> "'xxxxxxxxxx'… (100 characters)"
    """
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}… ({len(text):,} characters)"


def disk_full(exc: BaseException) -> bool:
    """Whether `exc`, or what it was raised from, is a full disk (or quota): an OSError with
    ENOSPC or EDQUOT, or the same error as polars, safetensors and torch word it."""
    import errno

    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        text = str(exc)
        if "No space left on device" in text or "os error 28" in text or "Disk quota" in text:
            return True
        exc = exc.__cause__ or exc.__context__
    return False
