"""A dict whose keys read and write as attributes (icefall's `params` object)."""

from __future__ import annotations

from typing import Any


class AttributeDict(dict):
    """`params.lr` for `params["lr"]`; a missing key raises AttributeError naming it."""

    def __getattr__(self, key: str) -> Any:
        try:
            return self[key]
        except KeyError:
            raise AttributeError(f"no parameter {key!r}") from None

    def __setattr__(self, key: str, value: Any) -> None:
        self[key] = value

    def __delattr__(self, key: str) -> None:
        try:
            del self[key]
        except KeyError:
            raise AttributeError(f"no parameter {key!r}") from None
