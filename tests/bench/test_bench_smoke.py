"""Smoke test of the benchmark suite: it runs and prints a table row.

Functional only: it never asserts on speed (CI machines vary).
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _bench(only: str, *more: str) -> subprocess.CompletedProcess:
    """``python -m bench --quick --only ONLY MORE...`` from the repo root."""
    return subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--only", only, *more],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.slow
def test_bench_quick_set_seq(tmp_path):
    out = tmp_path / "bench.json"
    proc = _bench("set_seq", "--json", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = [ln for ln in proc.stdout.splitlines() if ln.startswith("| set, sequential ")]
    assert len(rows) == 1, proc.stdout
    cells = [c.strip() for c in rows[0].strip("|").split("|")]
    assert cells[2] == "ops/s"
    assert float(cells[1].replace(",", "")) > 0
    assert out.exists()


@pytest.mark.slow
def test_bench_quick_repl_apply_has_no_error_rows():
    """The in-process replication rows call into the bus link's internals (how it
    packs bus messages): a refactor there once turned all eight into ERROR rows,
    seen only in a full run."""
    proc = _bench("repl_apply")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = [ln for ln in proc.stdout.splitlines() if ln.startswith("| apply ")]
    assert len(rows) == 6 and not [r for r in rows if "ERROR" in r], proc.stdout
