"""Fuzz sweep (issue 13): every verb over the whole malicious/malformed corpus; writes benchmarks/results/fuzz.md.

    .venv/bin/python benchmarks/fuzz.py                      # full corpus: hand-written cases + 500 mutations
    .venv/bin/python benchmarks/fuzz.py --sample             # the default sample of tests/test_fuzz.py
    .venv/bin/python benchmarks/fuzz.py --max-minutes 30     # stop starting runs after 30 min (report what ran)
    .venv/bin/python benchmarks/fuzz.py --report-only        # rebuild the report from the last --jsonl

Runs go in a seeded shuffled order, so a sweep cut short by --max-minutes still covers every category and verb.
Each outcome is appended to --jsonl as it finishes.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
# this script is benchmarks/fuzz.py: keep its folder off the path so that `fuzz` is the tests/fuzz package
sys.path[:] = [str(REPO / "tests")] + [p for p in sys.path if Path(p or ".").resolve() != HERE]
os.environ.setdefault("OMP_NUM_THREADS", "1")

from fuzz import corpus, runner  # noqa: E402


def machine(*packages: str) -> str:
    import importlib.util

    spec = importlib.util.spec_from_file_location("_machine", HERE / "_machine.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.machine(*packages)

RESULT = HERE / "results" / "fuzz.md"


def _load(jsonl: Path) -> list[runner.Outcome]:
    """The outcomes of a sweep; the "unverified" check is redone with the current pattern (it reads only output)."""
    outcomes = []
    for line in jsonl.read_text().splitlines():
        if line.strip():
            o = runner.Outcome(**json.loads(line))
            if "unverified" in o.failures and runner.VERIFIED.search(o.stdout + "\n" + o.stderr):
                del o.failures["unverified"]
            outcomes.append(o)
    return outcomes


def sweep(runs, *, timeout, workers, jsonl: Path, max_minutes: float | None) -> tuple[list[runner.Outcome], int]:
    deadline = time.monotonic() + max_minutes * 60 if max_minutes else None
    base = Path(tempfile.mkdtemp(prefix="onnxdeploy-fuzz-"))
    lock = threading.Lock()
    outcomes: list[runner.Outcome] = []
    skipped = 0
    jsonl.write_text("")
    start = time.monotonic()

    def one(run):
        nonlocal skipped
        if deadline and time.monotonic() > deadline:
            with lock:
                skipped += 1
            return
        o = runner.run_one(run, base, timeout)
        o.stdout, o.stderr = o.stdout[-2000:], o.stderr[-4000:]
        with lock:
            outcomes.append(o)
            with open(jsonl, "a") as f:
                f.write(json.dumps(o.__dict__) + "\n")
            n = len(outcomes)
            if n % 50 == 0 or not o.ok:
                mark = "FAIL " + ",".join(o.failures) if not o.ok else "ok"
                print(f"[{n}/{len(runs)} {time.monotonic() - start:6.0f}s] {o.run_id} rc={o.rc} {mark}", flush=True)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(one, runs))
    import shutil

    shutil.rmtree(base, ignore_errors=True)
    return outcomes, skipped


def _first_line(o: runner.Outcome) -> str:
    text = (o.stderr or o.stdout).strip().splitlines()
    err = [ln for ln in text if ln.startswith("error:")]
    line = (err or text[-1:] or [""])[0]
    return line.replace("|", "\\|")[:160]


def _cmd(o: runner.Outcome, base_hint: str = "") -> str:
    # shorten the run folder to $RUN for readability
    args = []
    for a in o.argv:
        if "/onnxdeploy-fuzz-" in a:
            head, _, tail = a.partition("/onnxdeploy-fuzz-")
            tail = tail.split("/", 2)[-1] if tail.count("/") >= 2 else ""
            a = head[: head.find("/tmp")] + "$RUN/" + tail if "/tmp" in head else "$RUN/" + tail
        args.append(a if len(a) < 120 else a[:60] + "..." + a[-40:])
    return " ".join(shlex.quote(a) if "$RUN" not in a else a for a in ["onnxdeploy", *args])


def report(outcomes, *, elapsed: float, skipped: int, command: str, timeout: float, workers: int, planned: int) -> str:
    totals = runner.totals(outcomes)
    failed = [o for o in outcomes if not o.ok]
    rc = Counter("hang" if "hang" in o.failures else str(o.rc) for o in outcomes)
    lines = [
        "# Fuzz sweep: the CLI over malicious, malformed and hostile models and command lines (issue 13)",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {machine('onnx', 'onnxruntime', 'onnx-ir', 'onnxscript')}",
        "",
        f"Ran {len(outcomes)} of {planned} planned runs ({skipped} not started: time budget) in {elapsed / 60:.1f} min,"
        f" {workers} at a time, timeout {timeout:.0f} s per run (a run past it is a hang), each in a fresh folder"
        f" (`tests/fuzz/corpus.py` builds it, `tests/fuzz/runner.py` checks it), load average at the end"
        f" {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs.",
        "",
        "## Totals",
        "",
        "**" + ", ".join(f"{n} {name}" for name, n in totals.items()) + f" over {len(outcomes)} runs**"
        f" ({len(failed)} runs with at least one failure).",
        "",
        "Exit codes: " + ", ".join(f"{k}: {v}" for k, v in sorted(rc.items())) + ".",
        "",
        "What each check means: tracebacks = `Traceback` in the output or killed by a signal; hangs = no exit within"
        " the timeout; changed inputs = a file of the case folder (model, data, inputs, canaries, files another model"
        " reads) changed or removed; reads outside = the canary bytes (float32 31337.25, in `../outside/secret.bin`"
        " and in cwd files named like the data files) in a file the run wrote, or its value printed; partial"
        " outputs = a failed run left a file; orphans = a process of the run (marked by an environment variable)"
        " alive after it returned; written outside = a succeeding run wrote a file other than its output path and"
        " its companions; other = exit code other than 0/1/2(usage)/3, exit 1/3 without an `error:` line, exit 0"
        " without the output or without a verification line.",
        "",
        "## Runs and failures per category",
        "",
        "| category | runs | exit 0 | exit 1/3 | failed | failures by kind |",
        "|---|---:|---:|---:|---:|---|",
    ]
    by_cat = defaultdict(list)
    for o in outcomes:
        by_cat[o.category.split("/")[0] if o.category.startswith("mutation") else o.category].append(o)
    for cat in sorted(by_cat, key=lambda c: -len(by_cat[c])):
        os_ = by_cat[cat]
        kinds = Counter(k for o in os_ for k in o.failures)
        lines.append(f"| {cat} | {len(os_)} | {sum(o.rc == 0 for o in os_)} | {sum(o.rc in (1, 3) for o in os_)} | "
                     f"{sum(not o.ok for o in os_)} | {', '.join(f'{k} {n}' for k, n in kinds.most_common())} |")  # fmt: skip
    mut = [o for o in outcomes if o.category.startswith("mutation")]
    if mut:
        lines += ["", "Mutations by operator:", "", "| mutation | runs | failed | failures by kind |", "|---|---:|---:|---|"]
        by_op = defaultdict(list)
        for o in mut:
            by_op[o.category.split("/", 1)[1]].append(o)
        for op in sorted(by_op):
            kinds = Counter(k for o in by_op[op] for k in o.failures)
            lines.append(f"| {op} | {len(by_op[op])} | {sum(not o.ok for o in by_op[op])} | "
                         f"{', '.join(f'{k} {n}' for k, n in kinds.most_common())} |")  # fmt: skip
    lines += ["", "## Runs and failures per verb", "", "| verb | runs | exit 0 | failed | failures by kind | median s |",
              "|---|---:|---:|---:|---|---:|"]  # fmt: skip
    by_verb = defaultdict(list)
    for o in outcomes:
        by_verb[o.verb].append(o)
    for verb in corpus.ALL_VERBS:
        os_ = by_verb.get(verb, [])
        if not os_:
            continue
        kinds = Counter(k for o in os_ for k in o.failures)
        secs = sorted(o.seconds for o in os_)
        lines.append(f"| {verb} | {len(os_)} | {sum(o.rc == 0 for o in os_)} | {sum(not o.ok for o in os_)} | "
                     f"{', '.join(f'{k} {n}' for k, n in kinds.most_common())} | {secs[len(secs) // 2]:.1f} |")  # fmt: skip
    lines += ["", "## Failing runs", ""]
    if not failed:
        lines.append("None.")
    by_kind = defaultdict(list)
    for o in failed:
        for k in o.failures:
            by_kind[k].append(o)
    for kind in sorted(by_kind, key=lambda k: -len(by_kind[k])):
        runs = by_kind[kind]
        lines += [f"### {kind} ({len(runs)} runs)", ""]
        # group by (category, verb) to keep it readable; one example command each
        groups = defaultdict(list)
        for o in runs:
            groups[(o.category, o.verb)].append(o)
        lines += ["| category | verb | runs | example case | example command | what it said |", "|---|---|---:|---|---|---|"]
        for (cat, verb), os_ in sorted(groups.items(), key=lambda kv: -len(kv[1])):
            o = os_[0]
            said = o.failures[kind].replace("|", "\\|")[:140] + " / " + _first_line(o)
            lines.append(f"| {cat} | {verb} | {len(os_)} | `{o.case}` | `{_cmd(o)}` | {said} |")
        lines.append("")
    lines += ["", "Reproduce one case: `.venv/bin/python -c \"import sys; sys.path.insert(0, 'tests'); from fuzz import"
              " corpus, runner; from pathlib import Path; r = [r for r in corpus.full_runs() if r.id == 'CASE::VERB'][0];"
              " print(runner.run_one(r, Path('/tmp'), keep=True).message())\"` (keeps the folder).", ""]  # fmt: skip
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mutations", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--sample", action="store_true", help="the default sample only")
    ap.add_argument("--no-slow", action="store_true", help="without the slow cases (100k-node chain)")
    ap.add_argument("--max-minutes", type=float, default=None)
    ap.add_argument("--jsonl", type=Path, default=Path(tempfile.gettempdir()) / "onnxdeploy-fuzz-runs.jsonl")
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument("--elapsed-minutes", type=float, default=None, help="with --report-only: the sweep's wall time")
    ap.add_argument("--output", type=Path, default=RESULT)
    ap.add_argument("--only-failed", type=Path, default=None, help="rerun only the runs that failed in this JSONL")
    args = ap.parse_args()
    command = " ".join([".venv/bin/python benchmarks/fuzz.py", *sys.argv[1:]])
    if args.sample:
        runs = corpus.sample_runs(args.seed)
    else:
        runs = corpus.full_runs(args.mutations, args.seed, slow=not args.no_slow)
        random.Random(args.seed).shuffle(runs)
    if args.only_failed:
        failed = {o.run_id for o in _load(args.only_failed) if not o.ok}
        runs = [r for r in runs if r.id in failed]
    start = time.monotonic()
    if args.report_only:
        outcomes, skipped = _load(args.jsonl), 0
        skipped = len(runs) - len(outcomes)
    else:
        outcomes, skipped = sweep(runs, timeout=args.timeout, workers=args.workers, jsonl=args.jsonl,
                                  max_minutes=args.max_minutes)  # fmt: skip
    elapsed = time.monotonic() - start
    if args.report_only:
        elapsed = args.elapsed_minutes * 60 if args.elapsed_minutes else sum(o.seconds for o in outcomes) / args.workers
    text = report(outcomes, elapsed=elapsed, skipped=skipped, command=command, timeout=args.timeout,
                  workers=args.workers, planned=len(runs))  # fmt: skip
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    totals = runner.totals(outcomes)
    print(", ".join(f"{n} {k}" for k, n in totals.items()), f"over {len(outcomes)} runs; wrote {args.output}")
    return 0 if all(n == 0 for n in totals.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
