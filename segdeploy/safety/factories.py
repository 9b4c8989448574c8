"""Running a model factory (trusted code) without downloads and without ``os._exit`` ending the command.

Contract
--------
* :func:`no_downloads` makes outbound connections inside it fail fast and records them, so a factory that
  tries to fetch pretrained weights fails instead of downloading: it patches ``socket.getaddrinfo``,
  ``socket.socket.connect``/``connect_ex`` and ``_socket.socket``/``_socket.getaddrinfo`` (local names and
  AF_UNIX sockets pass), and sets ``HF_HUB_OFFLINE``/``TRANSFORMERS_OFFLINE``/``HF_DATASETS_OFFLINE`` so
  the Hugging Face libraries refuse at once instead of retrying; all restored on exit. It is a guard
  against accidental downloads, not a sandbox: native code, child processes that ignore those variables
  and references taken before the block are not covered. Factory code is trusted code.
  :func:`offline_refusal` names the host an offline-mode error wanted to reach.
* :func:`no_process_exit` turns ``os._exit`` inside it into :class:`ProcessExit`, so a factory that
  calls it cannot end the command with exit status 0.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import threading
from typing import Any, Callable, Iterator

from segdeploy.safety.patching import MISSING, PATCH_LOCK, patched


class DownloadAttempt(OSError):
    """Raised inside :func:`no_downloads` instead of connecting."""


_LOCAL_HOSTS = (None, "localhost", "127.0.0.1", "::1")
_OFFLINE_VARS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")


def _address_host(address: Any) -> str:
    return str(address[0]) if isinstance(address, tuple) and address else str(address)


@contextlib.contextmanager
def _offline_hub() -> Iterator[None]:
    """Hugging Face libraries in offline mode (env vars for imports and children, the hub's constant if loaded)."""
    import sys

    saved_env = {k: os.environ.get(k) for k in _OFFLINE_VARS}
    constants = sys.modules.get("huggingface_hub.constants")
    saved_flag = getattr(constants, "HF_HUB_OFFLINE", MISSING)
    os.environ.update({k: "1" for k in _OFFLINE_VARS})
    if constants is not None:
        constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        constants = sys.modules.get("huggingface_hub.constants")
        if constants is not None:  # imported before or inside the block: back to what the environment says
            constants.HF_HUB_OFFLINE = (saved_flag if saved_flag is not MISSING else
                                        (os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE")
                                         or "").upper() in ("1", "ON", "YES", "TRUE"))


@contextlib.contextmanager
def no_downloads() -> Iterator[list[str]]:
    """Refuse outbound connections inside the block; yields the list of attempted hosts."""
    attempts: list[str] = []
    with PATCH_LOCK, patched(_connection_refusals(attempts)), _offline_hub():
        yield attempts


def _connection_refusals(attempts: list[str]) -> list[tuple[Any, str, Any]]:
    """Replacements for the socket entry points that record the attempt and raise DownloadAttempt."""
    import _socket

    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex
    real_raw_socket = _socket.socket

    def local(sock: Any, address: Any) -> bool:
        return sock.family == getattr(socket, "AF_UNIX", None) or _address_host(address) in _LOCAL_HOSTS

    def refused(address: Any) -> DownloadAttempt:
        attempts.append(_address_host(address))
        return DownloadAttempt(f"segdeploy refused a network connection to {address}")

    def connect(self: Any, address: Any) -> Any:
        if local(self, address):
            return real_connect(self, address)
        raise refused(address)

    def connect_ex(self: Any, address: Any) -> Any:
        if local(self, address):
            return real_connect_ex(self, address)
        raise refused(address)

    def lookup(real: Callable[..., Any]) -> Callable[..., Any]:
        def refuse_lookup(host: Any, *args: Any, **kwargs: Any) -> Any:
            if host in _LOCAL_HOSTS:
                return real(host, *args, **kwargs)
            attempts.append(str(host))
            raise DownloadAttempt(f"segdeploy refused to look up {host} (no downloads while loading a model)")
        return refuse_lookup

    class RawSocket(real_raw_socket):  # type: ignore[misc,valid-type] - for `import _socket` users
        def connect(self, address: Any) -> Any:
            if local(self, address):
                return real_raw_socket.connect(self, address)
            raise refused(address)

        def connect_ex(self, address: Any) -> Any:
            if local(self, address):
                return real_raw_socket.connect_ex(self, address)
            raise refused(address)

    return [(socket.socket, "connect", connect), (socket.socket, "connect_ex", connect_ex),
            (socket, "getaddrinfo", lookup(socket.getaddrinfo)), (_socket, "getaddrinfo", lookup(_socket.getaddrinfo)),
            (_socket, "socket", RawSocket)]


def offline_refusal(e: BaseException) -> str | None:
    """The host a Hugging Face offline-mode error (anywhere in ``e``'s chain) wanted to reach, else None."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        names = {c.__name__ for c in type(e).__mro__}
        if names & {"OfflineModeIsEnabled", "LocalEntryNotFoundError", "DownloadAttempt"}:
            m = re.search(r"https?://([^/\s'\"]+)", str(e))
            return m.group(1) if m else "the Hugging Face Hub"
        e = e.__cause__ or e.__context__  # type: ignore[assignment]
    return None


class ProcessExit(BaseException):
    """Raised inside :func:`no_process_exit` instead of ending the process."""

    def __init__(self, code: Any):
        super().__init__(f"os._exit({code!r})")
        self.code = code


@contextlib.contextmanager
def no_process_exit() -> Iterator[None]:
    """Inside the block, ``os._exit`` raises ProcessExit (in this thread) instead of ending the process."""
    real = os._exit
    thread = threading.get_ident()

    def refuse(code: int) -> None:
        if threading.get_ident() != thread:
            real(code)
        raise ProcessExit(code)

    with patched([(os, "_exit", refuse)]):
        yield
