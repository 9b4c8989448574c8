"""The writers' lock of a directory published as a whole (an export directory, a bundle).

Contract
--------
:class:`DirLock` ``(target)`` -- an advisory exclusive ``flock`` on the sibling ``.<name>.lock``. :meth:`acquire`
refuses a second concurrent writer with one :class:`~segdeploy.errors.ArtifactError` line naming the holder's pid;
the lock dies with its process (SIGKILL included). The lock file is opened ``O_NOFOLLOW | O_NONBLOCK`` relative to
the parent directory and must be a regular file; it is created exclusively when absent. Our pid is written into it
only when it is a single-link file of ours, so a planted link or hard link never has anything truncated, written
or created through it. :meth:`release` unlocks and keeps the file (see there why).
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path

from segdeploy import safefs
from segdeploy.errors import ArtifactError


class DirLock:
    """Advisory exclusive lock for writers of one directory published as a whole (``.<name>.lock`` beside it).

    The lock file is opened ``O_NOFOLLOW | O_NONBLOCK`` relative to the parent directory and must be a regular
    file; it is created exclusively when absent. Our pid is written into it only when it is a single-link file of
    ours, so a planted link or hard link never has anything truncated, written or created through it."""

    def __init__(self, target: Path):
        self.target = target
        self.path = target.parent / f".{target.name}.lock"
        self.fd: int | None = None

    def _open(self) -> int:
        fix = "remove it (segdeploy recreates its lock) and re-run"
        try:
            with safefs.dir_handle(self.path.parent) as pfd:
                for _ in range(3):
                    try:
                        return safefs.open_regular(pfd, self.path.name, shown=f"the lock {self.path}", fix=fix, write=True)
                    except FileNotFoundError:
                        pass
                    try:
                        return safefs.create_new(pfd, self.path.name, 0o644)
                    except FileExistsError:
                        continue  # another writer created it meanwhile: open that one
        except OSError as e:
            raise ArtifactError(f"cannot create the lock {self.path}: {e.strerror}; choose a writable --out") from None
        raise ArtifactError(f"cannot create the lock {self.path}: it keeps changing; {fix}")

    def acquire(self) -> None:
        import fcntl

        fd = self._open()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = ""
            with contextlib.suppress(OSError, ValueError):
                holder = os.pread(fd, 32, 0).decode().strip()
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                who = f" (pid {holder})" if holder.isdigit() else ""
                raise ArtifactError(f"another segdeploy run{who} is writing {self.target}; wait for it to finish, "
                                    "or choose another --out") from None
            raise ArtifactError(f"cannot lock {self.path}: {e.strerror}") from None
        if safefs.is_sole_and_ours(os.fstat(fd)):
            with contextlib.suppress(OSError):
                pid = f"{os.getpid()}\n".encode()
                os.pwrite(fd, pid, 0)
                os.ftruncate(fd, len(pid))
        self.fd = fd

    def release(self) -> None:
        # The lock file stays: unlinking it would let a waiter lock an orphaned inode while a third process
        # creates and locks a new file (two writers). It is empty of meaning once no process holds it.
        if self.fd is not None:
            import fcntl

            with contextlib.suppress(OSError):
                fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None
