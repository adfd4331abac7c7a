"""Undo/redo history: a list of reversible commands with a cursor, generic in what they change."""

from __future__ import annotations

from typing import Generic, Protocol, TypeVar

T_contra = TypeVar("T_contra", contravariant=True)
T = TypeVar("T")


class Command(Protocol[T_contra]):
    """A reversible change of a target (a document or a click session); ``text`` names it in the Edit menu."""

    text: str

    def do(self, target: T_contra) -> None: ...

    def undo(self, target: T_contra) -> None: ...


class History(Generic[T]):
    """Commands on a ``T`` done so far (``done``) and undone ones that can be redone (``undone``)."""

    def __init__(self, limit: int = 500) -> None:
        self.done: list[Command[T]] = []
        self.undone: list[Command[T]] = []
        self.limit = limit

    def push(self, command: Command[T]) -> None:
        self.done.append(command)
        self.undone.clear()
        if len(self.done) > self.limit:
            del self.done[0]

    def can_undo(self) -> bool:
        return bool(self.done)

    def can_redo(self) -> bool:
        return bool(self.undone)

    def pop_undo(self) -> Command[T] | None:
        if not self.done:
            return None
        command = self.done.pop()
        self.undone.append(command)
        return command

    def pop_redo(self) -> Command[T] | None:
        if not self.undone:
            return None
        command = self.undone.pop()
        self.done.append(command)
        return command

    def clear(self) -> None:
        self.done.clear()
        self.undone.clear()
