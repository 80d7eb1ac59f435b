"""The benchmark still runs: bench/run.py on a fleet of three nginx.

Timings on a shared test machine prove nothing, so nothing here is timed;
the test proves that every measurement was taken and every row of the
report was filled, so that ``make bench`` works when someone needs numbers.
"""

from __future__ import annotations

import json
import subprocess
import sys

from tests.support.modules import REPO

KINDS = ("ping", "ours_deploy", "ours_rerun", "baseline_deploy", "baseline_rerun")
ROWS = (
    "| changing deploy: wall (s) |",
    "| changing deploy: CPU (s) |",
    "| rerun, no change: wall (s) |",
    "| rerun, no change: CPU (s) |",
    "| reload → verified, median / p95 (ms) |",
    "| module peak RSS, median (MiB) |",
)


def test_bench_with_three_hosts_fills_the_whole_report(tmp_path) -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "run.py"), "--hosts", "3",
         "--repeat", "1", "--out", str(tmp_path)],
        capture_output=True, text=True, cwd=REPO, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads((tmp_path / "bench.json").read_text())
    table = (tmp_path / "bench.md").read_text()

    (round_,) = result["rounds"]
    for kind in KINDS:
        assert round_[kind]["wall_s"] > 0 and round_[kind]["cpu_s"] > 0, kind
    ours = [t for t in round_["ours_deploy"]["tasks"]
            if t["action"] == "certfleet.deploy.nginx_certificate"]
    assert len(ours) == 3 and all(t["result"]["changed"] for t in ours)
    assert all(t["result"]["served"]["verified_after_ms"] > 0 for t in ours)
    assert result["reload_to_verified"]["baseline_ms"]["n"] == 3
    assert {"reload", "validate", "verify", "swap"} <= set(
        result["ours_steps_ms"]["deploy"])
    modules = {row["module"] for row in result["modules"]}
    assert {"nginx_certificate", "copy", "stat", "command", "ping"} <= modules
    assert len(result["targets"]) == 6
    assert all(t["measured"] is not None for t in result["targets"])
    for row in ROWS:
        line = next(line for line in table.splitlines() if line.startswith(row))
        assert "–" not in line.split("|")[2], line
    assert "| target | measured | limit | met |" in table
    assert result["machine"]["nproc"] and result["machine"]["ansible_core"]
