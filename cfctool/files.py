"""Reading files that may come from anyone: only regular files, only up to a size bound.

`/dev/zero`, `/dev/urandom`, a FIFO with no writer or a directory must end in one clear
error, not in a hang, a traceback or all of memory: the file's kind and size are proved
(fstat on the opened descriptor, never a second look-up by name) before bytes are read.
"""

from __future__ import annotations

import hashlib
import os
import stat
import sys
from pathlib import Path

from cfctool.errors import CfcError

GiB = 1024**3
CHECKPOINT_LIMIT = 16 * GiB  # a .st file, or one on standard input
TEXT_LIMIT = 64 * 1024**2  # a sidecar, a --config file, a result file


def read_bounded(path: str | Path, limit: int, what: str, error: type[CfcError] = CfcError) -> bytes:
    """The bytes of the regular file `path`, refused (as `error`, naming `what`) when it is
    missing, not a regular file, or larger than `limit` bytes."""
    path = Path(path)
    try:
        # O_NONBLOCK: opening a FIFO with no writer returns at once (and is then refused)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise error(f"{path}: the {what} does not exist; check the path") from None
    except IsADirectoryError:
        raise error(f"{path}: is a directory, not a {what}") from None
    except OSError as exc:
        raise error(f"{path}: cannot read the {what} ({exc.strerror or exc})") from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise error(f"{path}: is a directory, not a {what}")
        if not stat.S_ISREG(info.st_mode):
            raise error(
                f"{path}: is not a regular file (a device, a pipe or a socket); give a {what} file, "
                "or '-' where standard input is accepted"
            )
        if info.st_size > limit:
            raise error(
                f"{path}: {info.st_size:,} bytes, more than the {limit:,} a {what} may have; is it the wrong file?"
            )
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb", closefd=True) as fh:
            fd = -1
            data = fh.read(limit + 1)
    except OSError as exc:
        raise error(f"{path}: cannot read the {what} ({exc.strerror or exc})") from None
    finally:
        if fd >= 0:
            os.close(fd)
    if len(data) > limit:  # it grew while being read
        raise error(f"{path}: more than the {limit:,} bytes a {what} may have; is it the wrong file?")
    return data


def read_stdin(limit: int, what: str, error: type[CfcError] = CfcError) -> bytes:
    """Standard input, up to `limit` bytes; more is refused rather than held in memory."""
    data = sys.stdin.buffer.read(limit + 1)
    if len(data) > limit:
        raise error(f"<stdin>: more than the {limit:,} bytes a {what} may have; is it the wrong stream?")
    return data


def strict_yaml(text: str):
    """YAML as plain data, refusing what a hand-written settings file never needs and an
    attacker uses: anchors and aliases (a few hundred bytes of aliases expand to gigabytes
    when the value is walked or printed) and duplicate keys (the later one silently wins).
    Errors are yaml.YAMLError (a MarkedYAMLError with its line), for the caller to name."""
    import yaml
    from yaml.constructor import ConstructorError

    class Loader(yaml.SafeLoader):
        def compose_node(self, parent, index):
            if self.check_event(yaml.AliasEvent):
                event = self.peek_event()
                raise ConstructorError(
                    None, None, "YAML aliases (*name) are not accepted; write the value out", event.start_mark
                )
            event = self.peek_event()
            if getattr(event, "anchor", None) is not None:
                raise ConstructorError(
                    None, None, "YAML anchors (&name) are not accepted; write the value out", event.start_mark
                )
            return super().compose_node(parent, index)

        def construct_mapping(self, node, deep=False):
            seen = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                try:
                    duplicate = key in seen
                    seen.add(key)
                except TypeError:
                    continue  # an unhashable key: SafeLoader says so itself
                if duplicate:
                    raise ConstructorError(None, None, f"duplicate key {str(key)[:60]!r}", key_node.start_mark)
            return super().construct_mapping(node, deep)

    return yaml.load(text, Loader=Loader)  # noqa: S506 (a SafeLoader subclass)


class PinnedReads:
    """Reads of the data files a checkpoint was made from: each file read once, its sha256
    taken from the very bytes that are parsed (`digests`: resolved path -> sha256), and,
    where `expected` pins a path, a file that changed since is refused before it is parsed."""

    def __init__(self, expected: dict[str, str] | None = None, error: type[CfcError] = CfcError):
        self.expected, self.error = dict(expected or {}), error
        self.digests: dict[str, str] = {}

    def read(self, path: str | Path, what: str, limit: int = CHECKPOINT_LIMIT) -> bytes:
        data = read_bounded(path, limit, what, self.error)
        self.pin(path, hashlib.sha256(data).hexdigest())
        return data

    def pin(self, path: str | Path, digest: str) -> None:
        """Record (and check) the digest of `path` (a folder's is made by its reader)."""
        key = str(Path(path).resolve())
        want = self.expected.get(key)
        if want is not None and want != digest:
            raise self.error(
                f"{path}: the file changed since the checkpoint was made (sha256 differs from the "
                f"recorded {want[:12]}...); evaluate on the data it was trained on"
            )
        self.digests[key] = digest
