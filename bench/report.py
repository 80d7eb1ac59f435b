"""Turn the benchmark's raw measurements into a summary, targets and tables."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

KINDS = ("ping", "ours_deploy", "ours_rerun", "baseline_deploy", "baseline_rerun")
RELOAD_TASK = "Reload nginx"
CHECK_TASK = "Check that nginx serves the new certificate"
OURS_ACTION = "certfleet.deploy.nginx_certificate"

# (name, numerator, denominator, limit): each a ratio of wall-time medians.
WALL_TARGETS = (
    ("changing deploy: ours / baseline", "ours_deploy", "baseline_deploy", 0.25),
    ("rerun: ours / baseline", "ours_rerun", "baseline_rerun", 0.30),
    ("changing deploy: ours / bare ping", "ours_deploy", "ping", 1.5),
    ("rerun: ours / bare ping", "ours_rerun", "ping", 1.5),
)
RELOAD_TO_VERIFIED_LIMIT_MS = 300
MEMORY_LIMIT = 1.2


def _first_line(argv: list) -> str:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=30,
                              check=False)
    except OSError as exc:
        return f"unavailable ({exc.strerror})"
    return (proc.stdout or proc.stderr).strip().splitlines()[0]


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _memory_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) / 1024 / 1024, 1)
    return 0.0


def machine(repo: Path) -> dict:
    """What the numbers were measured on."""
    from ansible.release import __version__ as ansible_version
    import cryptography

    debian = Path("/etc/debian_version")
    return {
        "nproc": os.cpu_count(),
        "cpu": _cpu_model(),
        "memory_gib": _memory_gib(),
        "kernel": platform.release(),
        "debian": debian.read_text().strip() if debian.exists() else "",
        "python": platform.python_version(),
        "ansible_core": ansible_version,
        "cryptography": cryptography.__version__,
        "nginx": _first_line(["/usr/sbin/nginx", "-v"]),
        "openssl": _first_line(["openssl", "version"]),
        "commit": _first_line(["git", "-C", str(repo), "rev-parse", "--short",
                               "HEAD"]),
        "load_before": list(os.getloadavg()),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }


def spread(values: list) -> dict:
    """Median, minimum and maximum (and how many) of a list of numbers."""
    if not values:
        return {"n": 0, "median": None, "min": None, "max": None}
    return {"n": len(values), "median": round(statistics.median(values), 3),
            "min": round(min(values), 3), "max": round(max(values), 3)}


def percentile(values: list, share: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def _tasks(rounds: list, kind: str) -> list:
    return [t for r in rounds for t in r[kind].get("tasks", [])]


def reload_to_verified(rounds: list) -> dict:
    """Ours: served.verified_after_ms. Baseline: reload start to check end."""
    ours = [t["result"]["served"]["verified_after_ms"]
            for t in _tasks(rounds, "ours_deploy")
            if t["action"] == OURS_ACTION and t.get("result")
            and (t["result"].get("served") or {}).get("verified_after_ms") is not None]
    baseline = []
    for r in rounds:
        tasks = r["baseline_deploy"].get("tasks", [])
        reloads = {t["host"]: t["start"] for t in tasks if t["task"] == RELOAD_TASK}
        for t in tasks:
            if t["task"] == CHECK_TASK and t["host"] in reloads:
                baseline.append(int((t["end"] - reloads[t["host"]]) * 1000))
    retries = [t["retries"] for t in _tasks(rounds, "baseline_deploy")
               if t["task"] == CHECK_TASK]
    return {
        "ours_ms": dict(spread(ours), p95=percentile(ours, 0.95)),
        "baseline_ms": dict(spread(baseline), p95=percentile(baseline, 0.95)),
        "baseline_check_retries": sum(retries),
    }


def step_timings(rounds: list, kind: str) -> dict:
    """Median milliseconds per step of our module, across hosts and rounds."""
    steps: dict = {}
    for task in _tasks(rounds, kind):
        if task["action"] != OURS_ACTION or not task.get("result"):
            continue
        for step, ms in (task["result"].get("timings") or {}).items():
            steps.setdefault(step, []).append(ms)
    return {step: statistics.median(ms) for step, ms in steps.items()}


def task_durations(rounds: list, kind: str) -> dict:
    """Median seconds per host for each task of a playbook."""
    durations: dict = {}
    for task in _tasks(rounds, kind):
        durations.setdefault(task["task"], []).append(task["end"] - task["start"])
    return {name: round(statistics.median(d), 3) for name, d in durations.items()}


def modules_summary(records: list) -> list:
    groups: dict = {}
    for record in records:
        key = (record["playbook"], record["phase"], record["module"])
        groups.setdefault(key, []).append(record)
    rows = []
    for (playbook, phase, module), items in groups.items():
        rss = [i["maxrss_kib"] / 1024 for i in items]
        rows.append({
            "playbook": playbook, "phase": phase, "module": module,
            "executions": len(items),
            "maxrss_mib": spread(rss),
            "cpu_ms_median": round(statistics.median(i["cpu_s"] for i in items)
                                   * 1000),
            "payload_kib": round(max(i["payload_bytes"] for i in items) / 1024, 1),
        })
    return rows


def _median_of(records: list, module: str, field: str) -> float | None:
    values = [r[field] for r in records if r["module"] == module]
    return statistics.median(values) if values else None


def build(config: dict, machine_info: dict, rounds: list, modules: list,
          imports: dict) -> dict:
    """Everything the JSON file holds: raw rounds, summaries and targets."""
    walls = {k: spread([r[k]["wall_s"] for r in rounds]) for k in KINDS}
    cpus = {k: spread([r[k]["cpu_s"] for r in rounds]) for k in KINDS}
    loads = [r[k]["load_1min"] for r in rounds for k in KINDS]
    ratios, targets = {}, []
    for name, top, bottom, limit in WALL_TARGETS:
        per_round = [r[top]["wall_s"] / r[bottom]["wall_s"] for r in rounds]
        ratios[f"{top}/{bottom}"] = spread(per_round)
        value = ratios[f"{top}/{bottom}"]["median"]
        targets.append({"target": f"{name} (wall)", "measured": value,
                        "limit": f"<= {limit}", "met": value <= limit})
    verified = reload_to_verified(rounds)
    median_ms = verified["ours_ms"]["median"]
    targets.append({"target": "reload to verified, median ms",
                    "measured": median_ms,
                    "limit": f"< {RELOAD_TO_VERIFIED_LIMIT_MS}",
                    "met": median_ms is not None
                    and median_ms < RELOAD_TO_VERIFIED_LIMIT_MS})
    ours_rss = _median_of(modules, "nginx_certificate", "maxrss_kib")
    copy_rss = _median_of(modules, "copy", "maxrss_kib")
    memory_ratio = round(ours_rss / copy_rss, 3) if ours_rss and copy_rss else None
    targets.append({"target": "module peak RSS: ours / ansible.builtin.copy",
                    "measured": memory_ratio, "limit": f"<= {MEMORY_LIMIT}",
                    "met": memory_ratio is not None and memory_ratio <= MEMORY_LIMIT})
    return {
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in config.items()},
        "machine": machine_info,
        "load_1min_during": spread(loads),
        "wall_s": walls,
        "cpu_s": cpus,
        "ratios": ratios,
        "reload_to_verified": verified,
        "ours_steps_ms": {k: step_timings(rounds, f"ours_{k}")
                          for k in ("deploy", "rerun")},
        "task_seconds": {k: task_durations(rounds, k) for k in KINDS[1:]},
        "modules": modules_summary(modules),
        "imports_cpu_ms": imports,
        "targets": targets,
        "rounds": rounds,
    }


# -- Markdown -------------------------------------------------------------------

def _fmt(value, digits: int = 2) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _cell(stats: dict, digits: int = 2) -> str:
    if stats["n"] > 1:
        return (f"{_fmt(stats['median'], digits)} "
                f"({_fmt(stats['min'], digits)}–{_fmt(stats['max'], digits)})")
    return _fmt(stats["median"], digits)


def _module_median(result: dict, module: str, field: str, playbooks: tuple):
    values = [row for row in result["modules"]
              if row["module"] == module and row["playbook"] in playbooks]
    if not values:
        return None
    if field == "maxrss_mib":
        return statistics.median(v["maxrss_mib"]["median"] for v in values)
    return statistics.median(v[field] for v in values)


def main_table(result: dict) -> list:
    w, c, q = result["wall_s"], result["cpu_s"], result["ratios"]
    lines = [
        "| measure | ours | baseline | bare ping | ours / baseline | ours / ping |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for phase, label in (("deploy", "changing deploy"), ("rerun", "rerun, no change")):
        lines.append(
            f"| {label}: wall (s) | {_cell(w[f'ours_{phase}'])} | "
            f"{_cell(w[f'baseline_{phase}'])} | {_cell(w['ping'])} | "
            f"{_cell(q[f'ours_{phase}/baseline_{phase}'])} | "
            f"{_cell(q[f'ours_{phase}/ping'])} |")
        lines.append(
            f"| {label}: CPU (s) | {_cell(c[f'ours_{phase}'])} | "
            f"{_cell(c[f'baseline_{phase}'])} | {_cell(c['ping'])} | "
            f"{_fmt(_ratio(c, f'ours_{phase}', f'baseline_{phase}'))} | "
            f"{_fmt(_ratio(c, f'ours_{phase}', 'ping'))} |")
    v = result["reload_to_verified"]
    lines.append(
        f"| reload → verified, median / p95 (ms) | {_fmt(v['ours_ms']['median'])} / "
        f"{_fmt(v['ours_ms']['p95'])} | {_fmt(v['baseline_ms']['median'])} / "
        f"{_fmt(v['baseline_ms']['p95'])} | – | – | – |")
    ours_rss = _module_median(result, "nginx_certificate", "maxrss_mib", ("ours",))
    copy_rss = _module_median(result, "copy", "maxrss_mib", ("baseline",))
    ping_rss = _module_median(result, "ping", "maxrss_mib", ("ping",))
    lines.append(
        f"| module peak RSS, median (MiB) | {_fmt(ours_rss, 1)} | "
        f"{_fmt(copy_rss, 1)} (copy) | {_fmt(ping_rss, 1)} | "
        f"{_fmt(_safe_div(ours_rss, copy_rss))} | "
        f"{_fmt(_safe_div(ours_rss, ping_rss))} |")
    return lines


def _ratio(stats: dict, top: str, bottom: str) -> float | None:
    return _safe_div(stats[top]["median"], stats[bottom]["median"])


def _safe_div(top, bottom) -> float | None:
    return round(top / bottom, 2) if top is not None and bottom else None


def markdown(result: dict) -> str:
    """The report as Markdown tables (what docs/performance.md shows)."""
    cfg, m = result["config"], result["machine"]
    load = result["load_1min_during"]
    out = [
        f"### {cfg['hosts']} hosts, {cfg['forks']} forks, {cfg['repeat']} round(s)",
        "",
        f"Machine: {m['nproc']} CPU ({m['cpu']}), {m['memory_gib']} GiB, "
        f"Debian {m['debian']}, kernel {m['kernel']}; Python {m['python']}, "
        f"ansible-core {m['ansible_core']}, cryptography {m['cryptography']}, "
        f"{m['nginx']}, {m['openssl']}; commit {m['commit']}.",
        f"Load average (1 min): {_fmt(m['load_before'][0])} before, "
        f"{_fmt(load['min'])}–{_fmt(load['max'])} during, "
        f"{_fmt(m.get('load_after', [None])[0])} after.",
        "Cells: median of the rounds (minimum–maximum).",
        "",
        *main_table(result),
        "",
        "| target | measured | limit | met |",
        "| --- | --- | --- | --- |",
    ]
    for t in result["targets"]:
        out.append(f"| {t['target']} | {_fmt(t['measured'])} | {t['limit']} | "
                   f"{'yes' if t['met'] else 'no'} |")
    steps = result["ours_steps_ms"]
    names = list(dict.fromkeys([*steps["deploy"], *steps["rerun"]]))
    out += ["", "Our module's steps, median ms per host:", "",
            "| step | " + " | ".join(names) + " |",
            "| --- |" + " --- |" * len(names)]
    for phase in ("deploy", "rerun"):
        out.append(f"| {phase} | "
                   + " | ".join(_fmt(steps[phase].get(n)) for n in names) + " |")
    out += ["", "Median seconds per host for each task:", "",
            "| playbook | task | changing deploy | rerun |",
            "| --- | --- | --- | --- |"]
    seconds = result["task_seconds"]
    for playbook in ("ours", "baseline"):
        deploy, rerun = seconds[f"{playbook}_deploy"], seconds[f"{playbook}_rerun"]
        for task in dict.fromkeys([*deploy, *rerun]):
            out.append(f"| {playbook} | {task} | {_fmt(deploy.get(task))} | "
                       f"{_fmt(rerun.get(task))} |")
    out += ["", "Module executions (module pass, peak RSS per execution):", "",
            "| playbook | run | module | executions | peak RSS median / max (MiB) "
            "| CPU median (ms) | AnsiballZ (KiB) |",
            "| --- | --- | --- | --- | --- | --- | --- |"]
    for row in result["modules"]:
        rss = row["maxrss_mib"]
        out.append(f"| {row['playbook']} | {row['phase']} | {row['module']} | "
                   f"{row['executions']} | {_fmt(rss['median'], 1)} / "
                   f"{_fmt(rss['max'], 1)} | {row['cpu_ms_median']} | "
                   f"{row['payload_kib']} |")
    out += ["", "Import CPU in one module process, its code compiled from source as "
            "under AnsiballZ (each row on its own, except our own code, which is "
            "measured on top of basic, ssl and cryptography):", "",
            "| import | CPU median (min–max) ms |", "| --- | --- |"]
    for name, stats in result["imports_cpu_ms"].items():
        out.append(f"| {name} | {_cell(stats, 1)} |")
    retries = result["reload_to_verified"]["baseline_check_retries"]
    out += ["", f"Baseline handshake checks that needed a retry: {retries}.", ""]
    return "\n".join(out)
