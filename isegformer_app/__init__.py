"""The isegformer annotation application (PySide6).

``state/`` holds the Qt-free annotation model (documents, commands with undo/redo, autosave,
export) that tests drive directly; ``ui/`` holds thin widgets that render it and send it commands,
with inference in a worker thread; ``main.py`` is the ``isegformer`` entry point.
"""
