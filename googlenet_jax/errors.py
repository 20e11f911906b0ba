"""The one line of an error that commands and error messages show; any layer may import it.

Imports nothing from the package, so the model, the trainer and the commands share it.
"""
from __future__ import annotations


def first_line(error: BaseException, limit: int | None = None) -> str:
    """The first line of `str(error)`, stripped and cut to `limit` characters; the error's type
    name when its message is empty."""
    text = str(error).strip()
    return text.splitlines()[0][:limit] if text else type(error).__name__
