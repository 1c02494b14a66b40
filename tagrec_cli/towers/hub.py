"""Whether a --model name can be a Hugging Face hub id, and whether the hub can be reached.

Both are asked before transformers is: it retries an unreachable hub for about a minute, and
a typo in --model or a machine without a network should fail at once, in one line.
"""

from __future__ import annotations

import os
import re
import socket
import threading
from urllib.parse import urlsplit

DEFAULT_ENDPOINT = "https://huggingface.co"  # what huggingface_hub uses without HF_ENDPOINT
PROBE_SECONDS = 3.0  # a TCP connect to the hub: long enough for a slow link, short to wait
HUB_ID_MAX = 96  # the hub's own limit on a repository name

# `name` or `owner/name`: letters, digits and -_. ; neither part starts with . or -
_PART = r"[A-Za-z0-9_][A-Za-z0-9_.-]*"
_HUB_ID = re.compile(rf"(?:{_PART}/)?{_PART}")


def plausible_hub_id(name: str) -> bool:
    """Whether `name` could name a hub repository.

    Example: "bert-base-uncased" and "sentence-transformers/all-MiniLM-L6-v2" -> True;
    "./model", "a/b/c", "my model" -> False
    """
    return len(name) <= HUB_ID_MAX and _HUB_ID.fullmatch(name) is not None


def endpoint() -> str:
    """The hub's address, as huggingface_hub reads it (HF_ENDPOINT)."""
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def offline_by_choice() -> bool:
    """HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) set to a true value, as huggingface_hub reads it."""
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return value.strip().upper() in {"1", "ON", "YES", "TRUE"}


def reachable(url: str, timeout: float = PROBE_SECONDS) -> bool:
    """Whether a TCP connection to the host of `url` opens within `timeout` seconds.

    The connect runs in a daemon thread so that a name lookup, which has no timeout of its
    own, cannot hold the caller longer than `timeout` either.
    """
    parts = urlsplit(url)
    if not parts.hostname:
        return False
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:  # a port that is not a number
        return False
    opened: list[bool] = []

    def connect() -> None:
        try:
            socket.create_connection((parts.hostname, port), timeout=timeout).close()
            opened.append(True)
        except OSError:
            pass

    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(opened)
