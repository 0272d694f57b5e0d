"""Files the runtime writes: published whole or not at all.

A reader (a log shipper, an operator, the next ``occ`` command) never sees half a file: every
write goes to a temp file in the same folder, is flushed to disk, then renamed over the target,
and the folder entry is flushed too. The file gets the mode the umask gives new files (mkstemp's
private 0600 would otherwise survive the rename and lock out a service user).
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import os
import shutil
import tempfile
import threading
from pathlib import Path

_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    with _UMASK_LOCK:  # reading the umask means setting it; nobody else may see the interim value
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def default_file_mode() -> int:
    """The mode ``open()`` would give a new file under the current umask."""
    return 0o666 & ~current_umask()


def write_atomic(path: str | os.PathLike, payload: bytes, sync: bool = True) -> Path:
    """Write ``payload`` to ``path``: temp file in the same folder, fsync, rename, fsync the folder.

    A file that is replaced keeps its mode (a model made group-readable for the service user stays
    so after ``occ calibrate``); a new file gets the umask's. ``sync=False`` skips both fsyncs: the
    file is still whole or absent after a process crash, but a power cut may lose it (for small
    files written often, where an fsync would cost milliseconds each).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = path.stat().st_mode & 0o7777 if path.is_file() else default_file_mode()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            if sync:
                os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    if sync:
        sync_folder(path.parent)
    return path


def copy_atomic(source: str | os.PathLike, path: str | os.PathLike) -> Path:
    """Copy ``source`` to ``path`` as :func:`write_atomic` writes (whole or absent), streamed, for
    files too big to hold in memory (event clips)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle, open(source, "rb") as original:
            shutil.copyfileobj(original, handle, 1 << 20)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, default_file_mode())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    sync_folder(path.parent)
    return path


def sync_folder(folder: str | os.PathLike) -> None:
    """Flush a folder's entries (a rename is durable only once its folder is)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems do not sync folders; the rename itself already happened
        pass
    finally:
        os.close(fd)


def now_iso() -> str:
    """The current UTC time as an ISO string, for provenance fields."""
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two paths name the same file (or would: a path that does not exist yet is compared by name)."""
    a, b = Path(a), Path(b)
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b) or a.resolve() == b.resolve()
    except OSError:
        return False


def file_sha256(path: str | os.PathLike) -> str:
    """The file's SHA-256, read in 1 MiB pieces."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
