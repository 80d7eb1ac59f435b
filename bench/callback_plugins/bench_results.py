# -*- coding: utf-8 -*-
# Copyright: certfleet.deploy contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Keep what the benchmark needs from a playbook run, in one JSON file."""

from __future__ import annotations

DOCUMENTATION = r"""
name: bench_results
type: aggregate
short_description: Record per-task timings and certfleet results for bench/run.py
description:
  - For every task on every host, records when it started and ended (the
    controller's monotonic clock), its status and how many retries it took.
  - For certfleet.deploy tasks it also keeps the result's C(changed),
    C(timings) and C(served); the modules return no key material.
  - Writes everything at the end of the run to the file named by the
    environment variable E(CERTFLEET_BENCH_RESULTS).
requirements:
  - enabled in callbacks_enabled
"""

import json
import os
import time

from ansible.plugins.callback import CallbackBase

KEPT_RESULT_KEYS = ("changed", "timings", "served", "failed", "msg")


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "bench_results"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.started = time.monotonic()
        self.running: dict = {}
        self.records: list = []

    def v2_runner_on_start(self, host, task) -> None:
        self.running[(host.get_name(), task._uuid)] = {
            "host": host.get_name(),
            "task": task.get_name(),
            "action": task.action,
            "start": time.monotonic() - self.started,
            "retries": 0,
        }

    def v2_runner_retry(self, result) -> None:
        record = self.running.get((result._host.get_name(), result._task._uuid))
        if record is not None:
            record["retries"] += 1

    def _finish(self, result, status: str) -> None:
        key = (result._host.get_name(), result._task._uuid)
        record = self.running.pop(key, None)
        if record is None:
            return
        record["end"] = time.monotonic() - self.started
        record["status"] = status
        if record["action"].startswith("certfleet.deploy."):
            record["result"] = {k: result._result.get(k) for k in KEPT_RESULT_KEYS}
        self.records.append(record)

    def v2_runner_on_ok(self, result) -> None:
        self._finish(result, "ok")

    def v2_runner_on_failed(self, result, ignore_errors=False) -> None:
        self._finish(result, "failed")

    def v2_runner_on_skipped(self, result) -> None:
        self._finish(result, "skipped")

    def v2_runner_on_unreachable(self, result) -> None:
        self._finish(result, "unreachable")

    def v2_playbook_on_stats(self, stats) -> None:
        path = os.environ.get("CERTFLEET_BENCH_RESULTS")
        if not path:
            return
        with open(path, "w", encoding="utf-8") as handle:
            json.dump({"elapsed": time.monotonic() - self.started,
                       "tasks": self.records}, handle)
