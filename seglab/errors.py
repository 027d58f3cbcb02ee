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
