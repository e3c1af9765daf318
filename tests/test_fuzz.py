"""Fuzz suite (issue 13): the CLI verbs over malicious, malformed and hostile models and command lines.

Each run must end cleanly (exit 0 with a verified result, or exit 1/3 with an `error:` line and no traceback), leave
every input unchanged, write nothing but its output (nothing at all when it fails), never read outside the model's
folder, leave no process behind and finish within its timeout. The default sample (~60 runs, cheap verbs, 2 at a
time) runs in `make test`; the whole corpus (>= 2,000 runs) is marked slow. `benchmarks/fuzz.py` runs the whole
corpus and writes the counts to benchmarks/results/fuzz.md.
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from fuzz import corpus, runner  # noqa: E402

SAMPLE_TIMEOUT = float(os.environ.get("ONNXDEPLOY_FUZZ_TIMEOUT", "20"))
# a run past this is a hang; generous, so a loaded CI machine does not turn slow work (the 100k-node cases) into
# "hangs": the speed goals are measured by benchmarks/fuzz.py and benchmarks/bounded.py, not by this test
FULL_TIMEOUT = 180.0


def _report(outcomes: list[runner.Outcome]) -> str:
    failed = [o for o in outcomes if not o.ok]
    kinds = Counter(k for o in failed for k in o.failures)
    head = f"{len(failed)} of {len(outcomes)} fuzz runs failed ({', '.join(f'{k}: {n}' for k, n in kinds.most_common())})"
    return head + "\n\n" + "\n\n".join(o.message() for o in failed)


def test_the_generator_is_deterministic_and_covers_the_issue(tmp_path: Path):
    runs = corpus.full_runs(mutations=500, seed=0)
    assert len(runs) >= 2000
    assert [r.id for r in runs] == [r.id for r in corpus.full_runs(mutations=500, seed=0)]
    categories = {r.category.split("/")[0] for r in runs}
    assert {"external-data", "tensor-places", "malformed-protobuf", "invalid-utf8-names", "markup-names",
            "bounded-work", "model-path", "input-files", "recipes", "output-paths", "cli-args",
            "mutation"} <= categories  # fmt: skip
    assert {r.verb for r in runs} == set(corpus.ALL_VERBS)
    assert len({r.case.id for r in runs if r.category.startswith("mutation")}) == 500
    # the same case builds the same bytes twice
    case = next(r.case for r in runs if r.category == "mutation/flip-bytes")
    built = []
    for name in ("a", "b"):
        layout = corpus.Layout(tmp_path / name)
        layout.create()
        case.build(layout)
        built.append(layout.model.read_bytes())
    assert built[0] == built[1]


def test_the_runner_catches_what_it_should(tmp_path: Path):
    """The checks can fail: a changed input, a file written beside the output and a canary read are reported."""
    layout = corpus.Layout(tmp_path / "r")
    layout.create()
    corpus.save(corpus.tiny(), layout.model)
    before = runner.snapshot(layout.root)
    layout.model.write_bytes(b"changed")
    (layout.out / "stray.tmp").write_bytes(corpus.CANARY_BYTES)
    after = runner.snapshot(layout.root)
    outcome = runner.Outcome("x", "x", "x", "edit", [], 0, 0.0)
    runner._check_files(outcome, before, after, [layout.out / "edited.onnx"], layout)
    assert set(outcome.failures) == {"changed-input", "written-outside", "read-outside"}


def test_fuzz_sample():
    runs = corpus.sample_runs()
    assert 40 <= len(runs) <= 70
    outcomes = runner.run_all(runs, timeout=SAMPLE_TIMEOUT, workers=2)
    assert len(outcomes) == len(runs)
    assert all(o.ok for o in outcomes), _report(outcomes)


@pytest.mark.slow
def test_fuzz_full_corpus():
    runs = corpus.full_runs(mutations=500, seed=0)
    outcomes = runner.run_all(runs, timeout=FULL_TIMEOUT, workers=2)
    totals = runner.totals(outcomes)
    assert all(n == 0 for n in totals.values()), f"{totals}\n\n" + _report(outcomes)


def test_the_runner_finds_a_process_left_behind(tmp_path: Path):
    """A process carrying a run's marker (inherited by every descendant) is found after the run, then killed."""
    import subprocess

    env = {**os.environ, runner.MARKER: "fuzz-self-test"}
    child = subprocess.Popen(["sleep", "30"], env=env, start_new_session=True)
    try:
        import time

        deadline = time.monotonic() + 10  # the child carries the marker once it has exec'd `sleep` (slow under load)
        found = runner._marked_processes("fuzz-self-test", str(tmp_path))
        while not found and time.monotonic() < deadline:
            time.sleep(0.05)
            found = runner._marked_processes("fuzz-self-test", str(tmp_path))
        assert [p.pid for p in found] == [child.pid]
    finally:
        child.kill()
        child.wait()
