"""Runs `onnxdeploy` over fuzz corpus runs in subprocesses and checks each run.

For every run, in a fresh folder (see `corpus.Layout`):

- no hang: the command finishes within `timeout` s (on timeout: SIGTERM to its process group, SIGKILL 3 s later);
- a clean outcome: exit 0, with the output file present and a verification line for verbs that verify, or exit 1/3
  with an `error:` line (exit 2 with click's `Usage:` is a usage error, also clean); never "Traceback", never a
  signal;
- no input changed: sha256 (and file type) of every entry under the run folder before/after, output paths excepted;
- nothing written outside the output path: new files only at the output path or beside it with its name as prefix;
- no partial output: after a failure no new file at all (the output absent, the previous file intact);
- no read outside the model's folder: the canary bytes (outside/secret.bin and the cwd files named like data files)
  never appear in a file the run wrote, nor "31337.2" in what it printed;
- no orphan: no process carrying this run's marker in its environment (or the run folder in its command line) is
  alive after the command returned.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import psutil

from . import corpus

REPO = Path(__file__).resolve().parents[2]
CLI = Path(sys.executable).with_name("onnxdeploy")
if not CLI.exists():
    CLI = REPO / ".venv" / "bin" / "onnxdeploy"
MARKER = "ONNXDEPLOY_FUZZ_RUN"
MEMORY_LIMIT = 4 << 30  # RLIMIT_AS of each run: a 7 TiB allocation fails instead of swapping the machine
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
# a verification line, or a no-op that needs none (legalize of an already legal model)
VERIFIED = re.compile(r"verif|match|agree|parity|cosine|passed|identical|skipp|already legal|nothing to", re.I)

KINDS = (
    "traceback", "hang", "crash", "bad-exit", "no-error-line", "missing-output", "unverified", "changed-input",
    "written-outside", "partial-output", "read-outside", "orphan", "build-error",
)  # fmt: skip
# the totals line
TOTALS = {
    "tracebacks": ("traceback", "crash"),
    "hangs": ("hang",),
    "changed inputs": ("changed-input",),
    "reads outside": ("read-outside",),
    "partial outputs": ("partial-output",),
    "orphans": ("orphan",),
    "written outside the output path": ("written-outside",),
    "other (exit code, missing error line or output, unverified, generator)": (
        "bad-exit", "no-error-line", "missing-output", "unverified", "build-error",
    ),
}


@dataclass
class Outcome:
    run_id: str
    case: str
    category: str
    verb: str
    argv: list[str]
    rc: int | None
    seconds: float
    stdout: str = ""
    stderr: str = ""
    failures: dict[str, str] = field(default_factory=dict)  # kind -> detail

    @property
    def ok(self) -> bool:
        return not self.failures

    def command_line(self) -> str:
        import shlex

        return " ".join(shlex.quote(a) for a in ["onnxdeploy", *self.argv])

    def message(self, first: int = 3, last: int = 6) -> str:
        text = (self.stderr or self.stdout).strip().splitlines()
        shown = text if len(text) <= first + last else [*text[:first], "...", *text[-last:]]
        err = "\n    ".join(shown)
        kinds = "; ".join(f"{k}: {v}" for k, v in self.failures.items())
        return (f"[{self.case} :: {self.verb}] {kinds}\n  rc={self.rc} in {self.seconds:.1f}s\n"
                f"  $ {self.command_line()}\n  stderr (first and last lines):\n    {err}")  # fmt: skip


# ------------------------------------------------------------------------------------------------- snapshots


def _entry(path: Path) -> tuple[str, str]:
    """(type, digest) of one entry, without following symlinks or opening anything but regular files."""
    try:
        st = path.lstat()
    except OSError:
        return ("missing", "")
    if stat.S_ISLNK(st.st_mode):
        return ("link", os.readlink(path))
    if stat.S_ISDIR(st.st_mode):
        return ("dir", "")
    if not stat.S_ISREG(st.st_mode):
        return ("special", str(stat.S_IFMT(st.st_mode)))
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return ("file", digest.hexdigest())


def snapshot(root: Path) -> dict[str, tuple[str, str]]:
    snap = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            snap[str(p)] = _entry(p)
    return snap


def _contains_canary(path: Path) -> bool:
    try:
        if not path.is_file() or path.is_symlink() or path.stat().st_size > (512 << 20):
            return False
        with open(path, "rb") as f:
            return corpus.CANARY_NEEDLE in f.read()
    except OSError:
        return False


# -------------------------------------------------------------------------------------------------- processes


def _marked_processes(token: str, root: str) -> list[psutil.Process]:
    found = []
    me = os.getpid()
    for p in psutil.process_iter(["pid", "cmdline", "status"]):
        if p.pid == me:
            continue
        try:
            if p.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            cmd = " ".join(p.info["cmdline"] or [])
            if root in cmd or p.environ().get(MARKER) == token:
                found.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, OSError):
            continue
    return found


def _kill_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


# ------------------------------------------------------------------------------------------------------ a run


def _output_paths(argv: list[str], cwd: Path) -> list[Path]:
    outs = []
    for flag, value in zip(argv, argv[1:]):
        if flag in corpus.OUTPUT_FLAGS:
            p = Path(value)
            outs.append(Path(os.path.normpath(p if p.is_absolute() else cwd / p)))
    return outs


def _allowed(path: str, outputs: list[Path]) -> bool:
    """A new entry at an output path or beside it, named after it (o.onnx.data, o.xml/o.bin, o.b.onnx, ...)."""
    p = Path(path)
    for out in outputs:
        if p == out or out in p.parents:  # the output itself, or inside it when it is a folder
            return True
        stem = out.name.split(".")[0]
        if p.parent == out.parent and stem and p.name.startswith(stem):
            return True
    return False


def run_one(run: corpus.Run, base: Path, timeout: float = 60.0, keep: bool = False) -> Outcome:
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", run.id)[:120]
    root = Path(tempfile.mkdtemp(prefix=safe + "-", dir=base))
    layout = corpus.Layout(root)
    placeholders = layout.create()
    argv_t = run.argv_template()
    outcome = Outcome(run.id, run.case.id, run.category, run.verb, list(argv_t), None, 0.0)
    try:
        extra = run.case.build(layout)
        if isinstance(extra, dict):
            placeholders.update(extra)
        argv = [a.format(**placeholders) for a in argv_t]
    except Exception as err:  # noqa: BLE001 - a generator bug: report it as such
        outcome.failures["build-error"] = f"{type(err).__name__}: {err}"
        return outcome
    outcome.argv = argv
    outputs = _output_paths(argv, layout.cwd)
    before = snapshot(root)

    token = f"{os.getpid()}-{root.name}"
    env = {**os.environ, MARKER: token, "OMP_NUM_THREADS": "1", "COLUMNS": "120", "TERM": "dumb", "NO_COLOR": "1"}
    env.pop("ONNXDEPLOY_DEBUG", None)
    logs = Path(tempfile.mkdtemp(prefix="log-", dir=base))
    start = time.perf_counter()
    with open(logs / "out", "wb") as out_f, open(logs / "err", "wb") as err_f:
        proc = subprocess.Popen([str(CLI), *argv], cwd=layout.cwd, env=env, stdin=subprocess.DEVNULL,
                                stdout=out_f, stderr=err_f, start_new_session=True)  # fmt: skip
        try:
            import resource

            resource.prlimit(proc.pid, resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
        except (OSError, ValueError, ImportError):
            pass
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            outcome.failures["hang"] = f"no exit after {timeout:.0f} s"
            _kill_group(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                _kill_group(proc.pid, signal.SIGKILL)
                proc.wait()
    outcome.seconds = time.perf_counter() - start
    outcome.rc = proc.returncode
    outcome.stdout = ANSI.sub("", (logs / "out").read_bytes()[:200_000].decode("utf-8", "replace"))
    outcome.stderr = ANSI.sub("", (logs / "err").read_bytes()[-200_000:].decode("utf-8", "replace"))
    shutil.rmtree(logs, ignore_errors=True)

    # orphans: give a child the parent just signalled a moment to go
    orphans = _marked_processes(token, str(root))
    if orphans:
        time.sleep(0.5)
        orphans = [p for p in orphans if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    if orphans:
        names = []
        for p in orphans:
            try:
                names.append(f"pid {p.pid}: {' '.join(p.cmdline())[:160]}")
                p.kill()
            except psutil.Error:
                pass
        outcome.failures["orphan"] = "; ".join(names) or "a process of the run outlived it"
    _kill_group(proc.pid, signal.SIGKILL)

    _check_outcome(outcome, run, outputs, layout)
    after = snapshot(root)
    _check_files(outcome, before, after, outputs, layout)
    if not keep:
        shutil.rmtree(root, ignore_errors=True)
    return outcome


def _check_outcome(o: Outcome, run: corpus.Run, outputs: list[Path], layout: corpus.Layout) -> None:
    text = o.stdout + "\n" + o.stderr
    if "Traceback (most recent call last)" in text:
        lines = [ln for ln in o.stderr.strip().splitlines() if ln.strip()]
        o.failures["traceback"] = lines[-1][:200] if lines else "Traceback"
    if "hang" in o.failures:
        return
    rc = o.rc
    if rc is None or rc < 0:
        o.failures["crash"] = f"killed by signal {-rc if rc else '?'}"
    elif rc == 0:
        for out in outputs:
            if layout.root in out.parents and not out.exists() and not out.is_symlink():
                o.failures["missing-output"] = f"exit 0 but {out} not written"
        if run.verb in corpus.VERIFYING_VERBS and "--no-verify" not in o.argv and not VERIFIED.search(text):
            o.failures["unverified"] = "exit 0 without a verification line"
    elif rc in (1, 3):
        if "traceback" not in o.failures and not any(ln.lstrip().startswith("error:") for ln in o.stderr.splitlines()):
            o.failures["no-error-line"] = f"exit {rc} without an 'error:' line on stderr"
    elif rc == 2 and "Usage:" in o.stderr:
        pass  # click's usage error
    elif "traceback" not in o.failures:
        o.failures["bad-exit"] = f"exit {rc}"
    if re.search(corpus.CANARY_TEXT, o.stdout):
        o.failures["read-outside"] = "canary value printed"


def _check_files(o: Outcome, before: dict, after: dict, outputs: list[Path], layout: corpus.Layout) -> None:
    changed, removed, new = [], [], []
    for path, entry in before.items():
        now = after.get(path)
        if now is None:
            removed.append(path)
        elif now != entry and entry[0] != "dir":
            changed.append(path)
    for path, entry in after.items():
        if path not in before and entry[0] != "dir":
            new.append(path)
    failed = o.rc != 0
    # a changed pre-existing file is a changed input unless it is the output path a succeeding run was asked to
    # write (a previous result being replaced), and it is not the model or a file a model reads
    inputs_changed = []
    for path in changed + removed:
        p = Path(path)
        is_output = any(p == out for out in outputs)
        if is_output and not failed and p.parent == layout.out:
            continue
        if is_output and failed:
            o.failures["partial-output"] = f"{path} changed by a failed run"
            continue
        inputs_changed.append(path)
    if inputs_changed:
        o.failures["changed-input"] = ", ".join(_short(p, layout) for p in inputs_changed[:4])
    stray = [p for p in new if failed or not _allowed(p, outputs)]
    if stray and "hang" in o.failures:  # killed by us: its leftovers belong to the hang, not to a failed run
        o.failures["hang"] += "; left behind: " + ", ".join(_short(p, layout) for p in stray[:2])
    elif stray:
        kind = "partial-output" if failed else "written-outside"
        o.failures[kind] = "new: " + ", ".join(_short(p, layout) for p in stray[:4])
    if (layout.cwd / corpus.PWNED).exists():
        o.failures["written-outside"] = "a payload ran (PWNED written)"
    leaked = [p for p in new + changed if _contains_canary(Path(p))]
    for out in outputs:  # an output outside the run folder (or a symlinked one)
        if not str(out).startswith(str(layout.root)) and _contains_canary(out):
            leaked.append(str(out))
    if leaked:
        o.failures["read-outside"] = "canary bytes in " + ", ".join(_short(p, layout) for p in leaked[:4])


def _short(path: str, layout: corpus.Layout) -> str:
    return path.replace(str(layout.root) + "/", "")


# ---------------------------------------------------------------------------------------------------- a batch


def run_all(
    runs: Iterable[corpus.Run],
    *,
    timeout: float = 60.0,
    workers: int = 2,
    base: Path | None = None,
    keep: bool = False,
    progress: Callable[[int, int, Outcome], None] | None = None,
) -> list[Outcome]:
    runs = list(runs)
    own = base is None
    base = Path(tempfile.mkdtemp(prefix="onnxdeploy-fuzz-")) if own else base
    base.mkdir(parents=True, exist_ok=True)
    results: list[Outcome | None] = [None] * len(runs)
    try:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = {pool.submit(run_one, r, base, timeout, keep): i for i, r in enumerate(runs)}
            done = 0
            from concurrent.futures import as_completed

            for fut in as_completed(futures):
                i = futures[fut]
                try:
                    results[i] = fut.result()
                except Exception as err:  # noqa: BLE001 - a runner bug must not lose the other results
                    r = runs[i]
                    results[i] = Outcome(r.id, r.case.id, r.category, r.verb, list(r.argv_template()), None, 0.0,
                                         failures={"build-error": f"runner: {type(err).__name__}: {err}"})  # fmt: skip
                done += 1
                if progress:
                    progress(done, len(runs), results[i])
    finally:
        if own and not keep:
            shutil.rmtree(base, ignore_errors=True)
    return [r for r in results if r is not None]


def totals(outcomes: list[Outcome]) -> dict[str, int]:
    return {name: sum(1 for o in outcomes if any(k in o.failures for k in kinds)) for name, kinds in TOTALS.items()}
