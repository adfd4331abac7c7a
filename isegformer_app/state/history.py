"""Undo/redo history: a list of reversible commands with a cursor."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from isegformer_app.state.document import Document


class Command(Protocol):
    """A reversible change of a :class:`Document`; ``text`` names it in the Edit menu."""

    text: str

    def do(self, doc: Document) -> None: ...

    def undo(self, doc: Document) -> None: ...


class History:
    """Commands done so far (``done``) and undone ones that can be redone (``undone``)."""

    def __init__(self, limit: int = 500) -> None:
        self.done: list[Command] = []
        self.undone: list[Command] = []
        self.limit = limit

    def push(self, command: Command) -> None:
        self.done.append(command)
        self.undone.clear()
        if len(self.done) > self.limit:
            del self.done[0]

    def can_undo(self) -> bool:
        return bool(self.done)

    def can_redo(self) -> bool:
        return bool(self.undone)

    def pop_undo(self) -> Command | None:
        if not self.done:
            return None
        command = self.done.pop()
        self.undone.append(command)
        return command

    def pop_redo(self) -> Command | None:
        if not self.undone:
            return None
        command = self.undone.pop()
        self.done.append(command)
        return command

    def clear(self) -> None:
        self.done.clear()
        self.undone.clear()
