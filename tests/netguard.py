"""Block the network for a test: in this process and in every child process it starts.

``with no_network() as attempts:`` makes every ``socket.connect``/``connect_ex``/``sendto`` and DNS lookup (other
than to loopback or a Unix socket) raise ``OSError`` and records it in ``attempts``; child Python processes inherit
the same guard through a ``sitecustomize`` on ``PYTHONPATH`` and append what they tried to a log read back on exit.
``offline_command(cmd)`` prefixes a command with ``unshare -rn`` (no network namespace at all) where the kernel
allows it, for engines' native tools.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

_GUARD = r'''
import os, socket

_LOG = os.environ.get("ONNXDEPLOY_NETGUARD_LOG")


def _local(address):
    if not isinstance(address, tuple):
        return True  # Unix socket
    host = str(address[0])
    return host in ("localhost", "::1", "") or host.startswith("127.")


def _refuse(what, address):
    if _LOG:
        with open(_LOG, "a") as f:
            f.write(f"{os.getpid()} {what} {address!r}\n")
    raise OSError(101, f"network blocked by the test (tried {what} {address!r})")


_connect, _connect_ex, _sendto = socket.socket.connect, socket.socket.connect_ex, socket.socket.sendto
_getaddrinfo = socket.getaddrinfo


def connect(self, address):
    if not _local(address):
        _refuse("connect", address)
    return _connect(self, address)


def connect_ex(self, address):
    if not _local(address):
        _refuse("connect", address)
    return _connect_ex(self, address)


def sendto(self, data, *args):
    address = args[-1]
    if not _local(address):
        _refuse("sendto", address)
    return _sendto(self, data, *args)


def getaddrinfo(host, *args, **kwargs):
    if host is not None and not _local((host, 0)):
        _refuse("getaddrinfo", host)
    return _getaddrinfo(host, *args, **kwargs)


socket.socket.connect, socket.socket.connect_ex, socket.socket.sendto = connect, connect_ex, sendto
socket.getaddrinfo = getaddrinfo
'''


@contextlib.contextmanager
def no_network():
    """Block non-loopback network access here and in child Python processes; yields the list of attempts."""
    attempts: list[str] = []
    with tempfile.TemporaryDirectory(prefix="netguard-") as tmp:
        site = Path(tmp) / "sitecustomize.py"
        site.write_text(_GUARD)
        log = Path(tmp) / "attempts.log"
        log.touch()
        saved = {k: os.environ.get(k) for k in ("PYTHONPATH", "ONNXDEPLOY_NETGUARD_LOG")}
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [tmp, saved["PYTHONPATH"]]))
        os.environ["ONNXDEPLOY_NETGUARD_LOG"] = str(log)
        namespace: dict = {}
        exec(compile(_GUARD, str(site), "exec"), namespace)  # patches the socket module in this process
        try:
            yield attempts
        finally:
            socket.socket.connect = namespace["_connect"]
            socket.socket.connect_ex = namespace["_connect_ex"]
            socket.socket.sendto = namespace["_sendto"]
            socket.getaddrinfo = namespace["_getaddrinfo"]
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            attempts.extend(line for line in log.read_text().splitlines() if line)


def unshare_works() -> bool:
    """True when ``unshare -rn`` can run a command without any network here."""
    if shutil.which("unshare") is None:
        return False
    try:
        return subprocess.run(["unshare", "-rn", "true"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def offline_command(cmd: list[str]) -> list[str]:
    """``cmd`` run in a fresh network namespace (no interfaces but loopback) when the kernel allows it."""
    return ["unshare", "-rn", *cmd] if unshare_works() else list(cmd)
