"""seglab's own error types: the ones that describe the user's input, not a bug.

``seglab`` commands print these in one line (``SEGLAB_DEBUG=1`` shows the traceback); any
other exception is a bug and keeps its traceback. Each subclass also derives from the
built-in type it used to be (``DataError`` is a ``ValueError``, ``DownloadError`` an
``OSError``...), so ``except ValueError`` written before still catches it.
"""

from __future__ import annotations


class SeglabError(Exception):
    """Bad data, bad settings, a run folder in the way, a download that cannot happen offline:
    the message says what is wrong and what to do."""


class SettingError(SeglabError, ValueError):
    """A setting (an argument, a recipe field, a command-line option) has a value seglab
    cannot use; the message names the setting."""


class PathNotFoundError(SeglabError, FileNotFoundError):
    """A file or folder the user named does not exist: ``str()`` is "path: what it should be".

    ``PathNotFoundError(path, "data folder not found")``; ``filename`` is the path.
    """

    def __init__(self, path, message: str = "not found"):
        super().__init__(2, message, str(path))  # errno.ENOENT, as FileNotFoundError's

    def __str__(self) -> str:
        return f"{self.filename}: {self.strerror}"
