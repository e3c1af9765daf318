"""Child processes that die with their parent: the one way onnxdeploy starts a subprocess.

:func:`run_child` runs a command in its own process group (``start_new_session=True``) with a timeout of its own,
and kills the whole group (the child and anything it started) when the timeout passes, when the parent exits
(``atexit``), when the parent gets SIGTERM/SIGINT, and, on Linux, when the parent is SIGKILLed: the child is
started with ``PR_SET_PDEATHSIG`` = SIGKILL (set by ``prctl`` between fork and exec), so the kernel kills it when
the parent dies. Use it for every subprocess in ``src/``; nothing else calls :mod:`subprocess` directly.
"""

from __future__ import annotations

import atexit
import os
import signal
import subprocess
import sys
import threading
from typing import Mapping, Sequence

from onnxdeploy.errors import OnnxDeployError

DEFAULT_TIMEOUT_S = 300.0
_PR_SET_PDEATHSIG = 1

_live: dict[int, subprocess.Popen] = {}  # pid -> child (each the leader of its own process group)
_lock = threading.Lock()
_libc = None


class ChildTimeout(OnnxDeployError):
    """A child process ran past its timeout and was killed (with everything it started)."""


def _load_libc():
    global _libc
    if _libc is None and sys.platform.startswith("linux"):
        import ctypes
        import ctypes.util

        try:
            _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        except OSError:
            _libc = False
    return _libc or None


def _pdeathsig_preexec(parent_pid: int, libc):
    """The function run in the child between fork and exec: die with SIGKILL when the parent dies."""

    def preexec() -> None:
        if libc is not None:
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the process group led by ``proc`` (the child and its descendants), then reap the child."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.kill()
    except OSError:
        pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass


def kill_all() -> None:
    """Kill every live child group (registered with ``atexit``; called by the SIGTERM/SIGINT handlers)."""
    with _lock:
        children = list(_live.values())
        _live.clear()
    for proc in children:
        kill_group(proc)


atexit.register(kill_all)

_previous_handlers: dict[int, object] = {}


def _on_signal(signum, frame) -> None:
    kill_all()
    previous = _previous_handlers.get(signum, signal.SIG_DFL)
    if callable(previous):
        previous(signum, frame)  # e.g. SIGINT's default handler raises KeyboardInterrupt
    elif previous != signal.SIG_IGN:  # SIG_DFL: die of the signal, as without us
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)


def _install_signal_handlers() -> None:
    if threading.current_thread() is not threading.main_thread():
        return  # signal handlers can only be set from the main thread; atexit and PDEATHSIG still apply
    for signum in (signal.SIGTERM, signal.SIGINT):
        current = signal.getsignal(signum)
        if current is _on_signal:
            continue
        _previous_handlers[signum] = current
        signal.signal(signum, _on_signal)


def run_child(
    argv: Sequence[str],
    *,
    timeout: float = DEFAULT_TIMEOUT_S,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike | None = None,
    input: str | None = None,
    what: str | None = None,
) -> subprocess.CompletedProcess:
    """Run ``argv`` to completion and return its exit code and captured text output.

    The child gets its own process group and dies with its parent (see the module docstring). After ``timeout``
    seconds the group is killed and :class:`ChildTimeout` is raised, naming ``what`` (default: the command).
    """
    libc = _load_libc()
    posix = os.name == "posix"
    _install_signal_handlers()
    proc = subprocess.Popen(
        list(argv),
        stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        errors="backslashreplace",
        env=dict(env) if env is not None else None,
        cwd=cwd,
        start_new_session=posix,
        preexec_fn=_pdeathsig_preexec(os.getpid(), libc) if libc is not None else None,
    )
    with _lock:
        _live[proc.pid] = proc
    try:
        try:
            stdout, stderr = proc.communicate(input=input, timeout=timeout)
        except subprocess.TimeoutExpired as err:
            kill_group(proc)
            name = what or os.path.basename(str(argv[0]))
            raise ChildTimeout(f"{name} did not finish within {timeout:g} s and was stopped",
                               hint="the model may be too large for this check") from err
        return subprocess.CompletedProcess(list(argv), proc.returncode, stdout, stderr)
    finally:
        if proc.poll() is None or _group_alive(proc.pid):
            kill_group(proc)  # an exception (KeyboardInterrupt...) or grandchildren left behind
        with _lock:
            _live.pop(proc.pid, None)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError, OSError):
        return False
    return True


def start_child(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike | None = None,
    stdout=None,
    stderr=None,
) -> subprocess.Popen:
    """Start ``argv`` in the background (a server): its own process group, dying with us as :func:`run_child`'s
    children do (atexit, SIGTERM/SIGINT, PR_SET_PDEATHSIG). Stop it with :func:`stop_child`."""
    libc = _load_libc()
    posix = os.name == "posix"
    _install_signal_handlers()
    proc = subprocess.Popen(
        list(argv), stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
        env=dict(env) if env is not None else None, cwd=cwd, start_new_session=posix,
        preexec_fn=_pdeathsig_preexec(os.getpid(), libc) if libc is not None else None,
    )
    with _lock:
        _live[proc.pid] = proc
    return proc


def stop_child(proc: subprocess.Popen, *, grace: float = 5.0) -> int | None:
    """SIGTERM the group of a :func:`start_child` child, SIGKILL it after ``grace`` seconds; its exit code."""
    with _lock:
        _live.pop(proc.pid, None)
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
    kill_group(proc)  # whatever is left of the group
    return proc.returncode
