"""A wrapper that hands a large value to a Prefect task without Prefect walking it."""

from __future__ import annotations

from typing import Any


class ByReference:
    """Hands a large value to a task without Prefect walking it.

    Prefect visits every task argument item by item, through dataclasses, lists and dicts (to
    find futures and record task inputs): for a run's prepared batches that is every article
    and paragraph, about 18 s per 100,000 paragraphs; for a batch's 200 planned files ~40 ms a
    task. This wrapper is none of those types (and pickles, for a Dask worker).
    """

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __repr__(self) -> str:
        return f"ByReference({type(self.value).__name__})"
