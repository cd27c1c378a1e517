"""Output files that never destroy an input and never leave half a file under their final name.

A command's output is first written under a hidden temporary name beside the final one (same folder,
same extension, so the format still follows it and the rename never crosses a file system) and
renamed into place only when the file is complete. Before anything is written, an output that
resolves to a file the command reads (its input, a keyframe, an image of an input folder) is
refused.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from types import FrameType

from streamingeffect.io.images import is_image_file

log = logging.getLogger(__name__)


class OutputError(ValueError):
    """An output path that must not be written (it is an input); the message says which and why."""


def files_read(path: Path) -> list[Path]:
    """The files a command reads for ``path``: the file itself, or a folder and its images."""
    if path.is_dir():
        return [path, *(p for p in path.iterdir() if is_image_file(p))]
    return [path]


def _same_file(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)  # hard links, bind mounts
    except OSError:  # one of them does not exist yet
        return False


def refuse_inputs_as_output(output: Path, inputs: Iterable[Path | None], what: str = "--output") -> None:
    """Raise OutputError when ``output`` is (or is a link to) one of ``inputs`` or a file they hold."""
    for given in inputs:
        if given is None or not given.exists():
            continue
        for read in files_read(given):
            if _same_file(output, read):
                raise OutputError(
                    f"{what} {output} is {'the input' if read == given else 'a file of the input'} "
                    f"{read}: writing it would destroy the input; choose another output path"
                )


class PartialFile:
    """``partial``: where to write; ``commit()`` renames it to ``final``, ``discard()`` removes it."""

    def __init__(self, final: Path):
        self.final = final
        name = f".{final.stem}.partial-{secrets.token_hex(3)}{final.suffix}"
        self.partial = final.with_name(name)

    def commit(self) -> None:
        if not self.partial.exists():
            raise OutputError(f"{self.final}: nothing was written, so the output was not created")
        os.replace(self.partial, self.final)

    def discard(self) -> None:
        self.partial.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_output(final: Path, inputs: Iterable[Path | None] = (), what: str = "--output") -> Iterator[Path]:
    """Yield a temporary path to write ``final`` to; renamed into place when the block succeeds,
    removed when it fails. Refuses an output that is one of ``inputs`` before the block runs."""
    refuse_inputs_as_output(final, inputs, what)
    output = PartialFile(final)
    try:
        yield output.partial
    except BaseException:
        output.discard()
        raise
    output.commit()


def close_all(closers: Iterable[Callable[[], object]], failure: BaseException | None = None) -> None:
    """Call every closer even when some fail. The first error wins: with ``failure`` (the error that
    ended the work) set, errors of the cleanup are only logged, since they are usually its echo (no
    frames were written); otherwise the first cleanup error is raised after all closers ran."""
    first: BaseException | None = None
    for close in closers:
        try:
            close()
        except Exception as error:  # each closer must run
            if failure is not None or first is not None:
                log.info("while cleaning up: %s: %s", type(error).__name__, error)
            else:
                first = error
    if first is not None:
        raise first


class InterruptShield:
    """While active, Ctrl-C is counted instead of raised, so finishing a file is never cut short
    (a second Ctrl-C during it would otherwise leave an unplayable file). Only the main thread
    receives signals; elsewhere the shield does nothing."""

    def __init__(self, message: str = "finishing the output; it is written in a moment"):
        self.message = message
        self.caught = 0
        self._previous: Callable[[int, FrameType | None], object] | int | None = None
        self._active = False

    def _note(self, signum: int, frame: FrameType | None) -> None:
        self.caught += 1
        print(f"\n{self.message}", file=sys.stderr, flush=True)

    def __enter__(self) -> InterruptShield:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._note)
            self._active = True
        return self

    def __exit__(self, *exc: object) -> None:
        if self._active:
            previous = self._previous if self._previous is not None else signal.default_int_handler
            signal.signal(signal.SIGINT, previous)
            self._active = False
