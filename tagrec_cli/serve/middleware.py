"""ASGI middleware of the app: the body limit and the strict query check."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

from tagrec_cli.errors import quoted


class BodyLimit:
    """ASGI middleware: a request body over `limit` bytes is refused before it is read (its
    Content-Length) or as soon as the bytes read pass it (a chunked body). The refusal is an
    HTTPException raised where the route reads the body, so it is answered as every error
    is (create_app's handlers), with status 413."""

    def __init__(self, app: Any, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD"):  # no body read
            await self.app(scope, receive, send)
            return
        from starlette.exceptions import HTTPException

        length = dict(scope.get("headers") or []).get(b"content-length", b"")
        declared = int(length) if length.isdigit() else 0
        read = 0

        async def limited() -> dict:
            nonlocal read
            if declared <= self.limit:
                message = await receive()
                if message["type"] == "http.request":
                    read += len(message.get("body", b""))
                if read <= self.limit:
                    return message
            raise HTTPException(413, f"the body is larger than {self.limit / 2**20:g} MiB "
                                     "(one person's ratings are kilobytes)")

        await self.app(scope, limited, send)


class StrictQuery:
    """ASGI middleware: an API route's query names only its own parameters, each once. A
    repeated one (user=1&user=2) or one the route does not take (POST /recommend?user=5)
    would otherwise be dropped silently, and the answer be for another question than the
    one asked: a 400 naming it instead. The routes outside the API's schema (the page, the
    docs) are not checked."""

    def __init__(self, app: Any, routes: list, respond: Callable[[str, str], Any]):
        from fastapi.routing import APIRoute

        self.app, self.respond = app, respond  # respond: (line, name) -> a response
        # (path, method) -> the query parameters it takes; the API's paths are fixed strings
        self.takes = {(r.path, m): {p.alias for p in r.dependant.query_params}
                      for r in routes if isinstance(r, APIRoute) and r.include_in_schema
                      for m in r.methods}

    def problem(self, scope: dict) -> tuple[str, str] | None:
        takes = self.takes.get((scope["path"], scope["method"]))
        if takes is None:  # the page, the docs, a 404 or a 405: not an API question
            return None
        given = [name for name, _ in parse_qsl(scope["query_string"].decode("latin-1"),
                                               keep_blank_values=True)]
        for name in dict.fromkeys(given):
            if name not in takes:
                return (f"{scope['path']} takes no parameter {quoted(name)} (it takes "
                        f"{', '.join(sorted(takes)) or 'none'})", name)
            if given.count(name) > 1:
                return f"{name} is given {given.count(name)} times: give it once", name
        return None

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        found = self.problem(scope) if scope["type"] == "http" and scope.get(
            "query_string") else None
        if found is None:
            await self.app(scope, receive, send)
            return
        await self.respond(*found)(scope, receive, send)
