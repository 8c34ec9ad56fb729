"""The on-disk cache of semantic_guard's exported graphs: only what this user wrote is read.

An entry is a graph and, beside it, the SHA-256 of its bytes. The digest
catches a torn or flipped file, not a planted one: whoever can write the
directory can write a matching digest too. So an entry is read only from a
directory that no one else can write (owned by this user or root, not
writable by group or others), through a descriptor of that directory, with
links not followed, and only when the file itself is ours and closed to
others. The bytes that match the digest are the bytes the session is made
from: nothing is read twice.

A directory others may write (``/tmp``, a Kubernetes ``emptyDir``) is not
used itself: entries go to a ``taxmeter-<uid>`` directory inside it, made
private. Nothing here fails a start: a directory that cannot be made, read
or trusted is logged, and the graph stays in memory.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import secrets
import stat
from pathlib import Path

log = logging.getLogger("taxmeter.semantic_guard")

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK  # a FIFO must not hang
_OTHERS_WRITE = stat.S_IWGRP | stat.S_IWOTH


class UntrustedError(Exception):
    """A directory or file of the cache that someone else could have written."""


def default_cache_dir() -> Path | None:
    """``$XDG_CACHE_HOME/taxmeter``, else ``~/.cache/taxmeter``; None without a home."""
    base = os.environ.get("XDG_CACHE_HOME")
    if not base:
        try:
            base = str(Path.home() / ".cache")
        except RuntimeError:  # no HOME and no passwd entry: an arbitrary container uid
            return None
    return Path(base) / "taxmeter"


def digest_name(name: str) -> str:
    return str(Path(name).with_suffix(".sha256"))


class GraphCache:
    """Reads and writes named graphs in ``directory``, or in a private one inside it."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def read(self, name: str) -> bytes | None:
        """The entry's bytes when they are ours and match their digest; None otherwise."""
        try:
            fd = self._open(create=False)
        except FileNotFoundError:
            return None  # a first start
        except (OSError, ValueError, UntrustedError) as exc:
            log.warning(
                "semantic_guard: not using the cached ONNX model in %s (%s); "
                "it is exported anew and stays in memory",
                self.directory,
                exc,
            )
            return None
        try:
            graph = _read_own(fd, name)
            expected = _read_own(fd, digest_name(name)).decode("ascii").strip()
        except FileNotFoundError:
            return None
        except (OSError, UntrustedError) as exc:
            log.warning("semantic_guard: not using the cached ONNX model %s: %s", name, exc)
            return None
        except UnicodeDecodeError:
            expected = ""
        finally:
            os.close(fd)
        if hashlib.sha256(graph).hexdigest() != expected:
            log.warning("semantic_guard: the cached ONNX model %s is damaged; exporting anew", name)
            return None
        return graph

    def write(self, name: str, graph: bytes) -> None:
        """Write atomically (a reader sees the old pair, the new one or a mismatch); never raise."""
        try:
            fd = self._open(create=True)
            try:
                digest = hashlib.sha256(graph).hexdigest().encode() + b"\n"
                _replace(fd, digest_name(name), digest)
                _replace(fd, name, graph)
            finally:
                os.close(fd)
        except (OSError, ValueError, UntrustedError) as exc:
            log.warning(
                "semantic_guard: cannot cache the ONNX model in %s (%s); it stays in memory, "
                "and the next start exports it again",
                self.directory,
                exc,
            )

    def _open(self, *, create: bool) -> int:
        """A descriptor of the directory entries live in, checked to be closed to others."""
        if create:
            self.directory.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileExistsError):
                os.mkdir(self.directory, 0o700)
        # A linked directory is fine: what is checked is the directory it leads to.
        fd = os.open(self.directory, _DIR_FLAGS)
        if _trusted(os.fstat(fd)):
            return fd
        # Others may write here: use a directory of our own inside it.
        private = f"taxmeter-{os.geteuid()}"
        try:
            if create:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(private, 0o700, dir_fd=fd)
            inner = os.open(private, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=fd)
        finally:
            os.close(fd)
        status = os.fstat(inner)
        if not _trusted(status):
            os.close(inner)
            raise UntrustedError(f"{private} in it {_whose(status)}")
        return inner


def _trusted(status: os.stat_result) -> bool:
    return status.st_uid in (os.geteuid(), 0) and not status.st_mode & _OTHERS_WRITE


def _whose(status: os.stat_result) -> str:
    if status.st_uid not in (os.geteuid(), 0):
        return f"is owned by uid {status.st_uid}"
    return "is writable by others"


def _read_own(dir_fd: int, name: str) -> bytes:
    """``name``'s bytes, if it is a regular file of ours (or root's) that others cannot write."""
    fd = os.open(name, _FILE_FLAGS, dir_fd=dir_fd)  # a link raises ELOOP
    try:
        status = os.fstat(fd)
        if not stat.S_ISREG(status.st_mode):
            raise UntrustedError(f"{name} is not a regular file")
        if not _trusted(status):
            raise UntrustedError(f"{name} {_whose(status)}")
        with os.fdopen(os.dup(fd), "rb") as f:
            return f.read()
    finally:
        os.close(fd)


def _replace(dir_fd: int, name: str, data: bytes) -> None:
    """``name`` holds ``data``, swapped in whole; a link in its place is replaced, not followed."""
    tmp = f".{name}.{secrets.token_hex(6)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=dir_fd)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=dir_fd)
        raise
