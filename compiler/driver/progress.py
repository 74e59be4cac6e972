"""Stage timing and progress lines, so a user sees where compile time goes."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass
class Stage:
    name: str
    detail: str = ""
    seconds: float = 0.0


class Stages:
    """Times named stages; reports each one through ``emit`` as it finishes.

    ``emit`` is None for silence (the Python API's default) or e.g. a function
    printing to stderr (the CLI).
    """

    def __init__(self, emit: Callable[[str], None] | None = None, prefix: str = ""):
        self.emit = emit
        self.done: list[Stage] = []
        self.prefix = prefix  # stage names start with it (one candidate's build: "bf16 ")

    def named(self, prefix: str) -> Stages:
        """These stages, with names that start with ``prefix``: a candidate's own steps are
        told apart in the progress lines and the report (``--precision auto``)."""
        view = Stages(self.emit, self.prefix + prefix)
        view.done = self.done
        return view

    def say(self, message: str) -> None:
        if self.emit:
            self.emit(message)

    @contextmanager
    def stage(self, name: str):
        name = self.prefix + name
        record = Stage(name)
        if self.emit:
            self.emit(f"[mcc] {name} ...")
        start = time.perf_counter()
        yield record
        record.seconds = time.perf_counter() - start
        self.done.append(record)
        if self.emit:
            detail = f"  {record.detail}" if record.detail else ""
            self.emit(f"[mcc] {name:<8} {record.seconds:7.2f}s{detail}")

    def to_json(self) -> dict:
        return {s.name: {"seconds": round(s.seconds, 3), "detail": s.detail} for s in self.done}
