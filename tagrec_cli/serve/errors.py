"""The errors the API answers with: one line and the query parameter it is about."""

from __future__ import annotations

from tagrec_cli.errors import QueryError

# How to find what a query named that the workspace lacks, in the API's terms (the CLI has
# its own: cli.app.CLI_HINTS).
API_HINTS = {"movie": "; look a movie up by title with /movies?title=TEXT or "
                      "/similar?title=TEXT"}


class ApiError(Exception):
    """An answer that is an error: HTTP status, one line, and the parameter it is about."""

    def __init__(self, status: int, message: str, parameter: str | None = None):
        super().__init__(message)
        self.status, self.message, self.parameter = status, message, parameter

    @classmethod
    def of(cls, exc: QueryError) -> ApiError:
        """A query's error as the API answers it: 404 where the value names nothing the
        workspace has, else 400, and for an unknown movie how to find one."""
        if not exc.unknown:
            return cls(400, str(exc), exc.parameter)
        return cls(404, str(exc) + API_HINTS.get(exc.parameter, ""), exc.parameter)
