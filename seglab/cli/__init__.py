"""The ``seglab`` command line: train, evaluate, predict, check, recipes.

    seglab recipes
    seglab train unet-pets --data-dir data/oxford_pets --out runs/pets
    seglab train unet-pets --data-dir data/oxford_pets --smoke --weights none
    seglab evaluate runs/pets --data-dir data/oxford_pets
    seglab predict runs/pets photo.jpg more_photos/ --out masks/
    seglab check data/oxford_pets
    seglab export runs/pets --format onnx --out pets.onnx

Bad arguments and bad data give a one-line (or one-list) message on stderr and exit status 1
(2 for usage errors); Ctrl-C during training exits with 130 after writing a checkpoint.
TensorFlow is imported only by the commands that need it.

``arguments`` parses the command line, ``commands`` runs each command; this module reports
their errors: seglab's own (``seglab.errors.SeglabError``) in one line, anything else with
its traceback.
"""

from __future__ import annotations

import os
import signal
import sys

from seglab.cli.arguments import UsageError, build_parser
from seglab.cli.commands import (
    COMMANDS,
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    print_error,
)
from seglab.errors import SeglabError

__all__ = [
    "COMMANDS",
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "UsageError",
    "build_parser",
    "main",
]


def _is_user_error(error: BaseException, args) -> bool:
    """Errors reported in one line, without a traceback: seglab's own types (``SeglabError``:
    bad data, bad settings, a run folder in the way, a download that cannot happen offline),
    and a missing file or folder that the command line itself named. Anything else is a bug
    and keeps its traceback."""
    if isinstance(error, SeglabError | UsageError):
        return True
    if isinstance(error, FileNotFoundError) and error.filename is not None:
        values = []
        for value in vars(args).values():
            values += value if isinstance(value, list) else [value]
        given = {
            os.path.abspath(os.fspath(value))
            for value in values
            if isinstance(value, str | os.PathLike)
        }
        return os.path.abspath(os.fspath(error.filename)) in given
    return False


def main(argv=None) -> int:
    """Run the command line; returns the exit status (the console script exits with it)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as error:
        print_error(str(error))
        return EXIT_USAGE
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE

    # SIGTERM (a scheduler stopping the job) is handled like Ctrl-C: checkpoint, then exit.
    previous = signal.getsignal(signal.SIGTERM)
    if args.command == "train" and previous in (signal.SIG_DFL, None):
        signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print_error("interrupted")
        return EXIT_INTERRUPTED
    except Exception as error:  # noqa: BLE001 - filtered just below
        if os.environ.get("SEGLAB_DEBUG") or not _is_user_error(error, args):
            raise
        training = sys.modules.get("seglab.training")
        if training is not None and isinstance(error, training.TrainingInterrupted):
            print_error(str(error))
            return EXIT_INTERRUPTED
        print_error(_message(error))
        return EXIT_ERROR
    finally:
        if args.command == "train" and previous in (signal.SIG_DFL, None):
            signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt


def _message(error: BaseException) -> str:
    if isinstance(error, OSError) and error.filename and error.strerror:
        return f"{error.filename}: {error.strerror}"
    return str(error) or type(error).__name__
