"""Benchmark certfleet.deploy against the everyday way, on a local nginx fleet.

Run from the repository root (``make bench N=50`` does the same)::

    .venv/bin/python bench/run.py --hosts 50 --repeat 3

One run starts N nginx instances on 127.0.0.x (bench/fleet.py), then, for
each repetition, measures over the same inventory and the same forks:

- a bare ``ansible -m ansible.builtin.ping`` (Ansible's own floor);
- bench/playbooks/ours.yml deploying a new certificate to every host, and
  the same playbook again, which changes nothing;
- bench/playbooks/baseline.yml (copy, copy, ``nginx -t``, reload handler,
  ``openssl s_client`` retried) doing the same with another new certificate,
  and again.

Each measurement is the wall time and the CPU time (user + system of the
whole ansible process tree, from ``getrusage(RUSAGE_CHILDREN)``) of one
``ansible-playbook`` process. Then a module pass runs both playbooks and the
ping on a few hosts with an interpreter wrapper that records, for every
module execution, its peak RSS, its CPU time and the size of its AnsiballZ
payload. The report goes to JSON and to a Markdown table (bench/report.py).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench import report  # noqa: E402
from bench.fleet import Fleet  # noqa: E402
from tests.support.nginx import NGINX_BINARY  # noqa: E402
from tests.support.pki import PKI, Leaf  # noqa: E402

BENCH = REPO / "bench"
COLLECTIONS = REPO / ".build" / "collections"
BIN = Path(sys.executable).parent
RUN_TIMEOUT = 1800
MODULE_PASS_HOSTS = 5

# The interpreter the module pass gives Ansible: it runs the real Python as
# a child and notes what that child used. Written out with the paths filled.
RSS_WRAPPER = '''#!{python} -I
import json, os, sys, time
script = sys.argv[1] if len(sys.argv) > 1 else ""
started = time.monotonic()
pid = os.fork()
if pid == 0:
    os.execv({python!r}, [{python!r}] + sys.argv[1:])
_, status, usage = os.wait4(pid, 0)
name = os.path.basename(script)
record = {{
    "module": name[len("AnsiballZ_"):-3] if name.startswith("AnsiballZ_") else name,
    "maxrss_kib": usage.ru_maxrss,
    "cpu_s": usage.ru_utime + usage.ru_stime,
    "wall_s": time.monotonic() - started,
    "payload_bytes": os.path.getsize(script) if os.path.isfile(script) else 0,
}}
with open({log!r}, "a") as handle:
    handle.write(json.dumps(record) + "\\n")
sys.exit(os.waitstatus_to_exitcode(status))
'''


class Runner:
    """Runs ansible and ansible-playbook over the fleet and measures them."""

    def __init__(self, work: Path, inventory: Path, forks: int) -> None:
        self.work = work
        self.inventory = inventory
        self.forks = forks
        self.count = 0
        config = work / "ansible.cfg"
        config.write_text("[defaults]\n")
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("COVERAGE", "_ANSIBLE_ANSIBALLZ_COVERAGE"))}
        env.update(
            ANSIBLE_CONFIG=str(config),
            ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS),
            ANSIBLE_CALLBACK_PLUGINS=str(BENCH / "callback_plugins"),
            ANSIBLE_CALLBACKS_ENABLED="bench_results",
            ANSIBLE_LOCALHOST_WARNING="false",
            ANSIBLE_INVENTORY_UNPARSED_WARNING="false",
            ANSIBLE_RETRY_FILES_ENABLED="false",
            ANSIBLE_NOCOLOR="1",
        )
        self.env = env

    def playbook(self, name: str, extra_vars: dict, *args: str) -> dict:
        """Run bench/playbooks/NAME.yml; return its measurement."""
        self.count += 1
        results = self.work / f"results-{self.count:03d}-{name}.json"
        vars_file = self.work / f"vars-{self.count:03d}.json"
        vars_file.write_text(json.dumps(extra_vars))
        argv = [str(BIN / "ansible-playbook"), "-i", str(self.inventory),
                "-f", str(self.forks), "-e", f"@{vars_file}", *args,
                str(BENCH / "playbooks" / f"{name}.yml")]
        measured = self.measure(argv, name, dict(CERTFLEET_BENCH_RESULTS=str(results)))
        measured["tasks"] = (json.loads(results.read_text())["tasks"]
                             if results.exists() else [])
        return measured

    def ping(self, *args: str) -> dict:
        argv = [str(BIN / "ansible"), "fleet", "-i", str(self.inventory),
                "-f", str(self.forks), "-m", "ansible.builtin.ping", *args]
        return self.measure(argv, "ping", {})

    def measure(self, argv: list, name: str, env: dict) -> dict:
        """Wall and CPU time of one command and its whole process tree."""
        log = self.work / f"log-{self.count:03d}-{name}.txt"
        load = os.getloadavg()[0]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.monotonic()
        with open(log, "w") as output:
            proc = subprocess.run(argv, env=dict(self.env, **env), cwd=self.work,
                                  stdin=subprocess.DEVNULL, stdout=output,
                                  stderr=subprocess.STDOUT, timeout=RUN_TIMEOUT,
                                  check=False)
        wall = time.monotonic() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        if proc.returncode != 0:
            lines = log.read_text(errors="replace").splitlines()
            failures = [line for line in lines if line.startswith("fatal:")]
            raise RuntimeError(f"{name} exited {proc.returncode} (log {log}):\n"
                               + "\n".join(failures[:5] or lines[-40:]))
        return {"wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
                "load_1min": round(load, 2)}


def new_material(pki: PKI, directory: Path) -> tuple[Leaf, dict]:
    """A fresh ECDSA leaf, written where the playbooks read it from."""
    leaf = pki.leaf(key_type="ecdsa")
    paths = leaf.write(directory)
    return leaf, {"bench_fullchain": str(paths["fullchain"]),
                  "bench_key": str(paths["privkey"]),
                  "bench_leaf": str(paths["cert"])}


def check_served(fleet: Fleet, leaf: Leaf, what: str) -> None:
    """Every host serves ``leaf`` after a deploy, or the benchmark is void."""
    wrong = {name: sha for name, sha in fleet.served().items() if sha != leaf.sha256}
    if wrong:
        raise RuntimeError(f"After {what}, {len(wrong)} host(s) do not serve the "
                           f"new certificate: {sorted(wrong)[:5]}")


def repetition(runner: Runner, fleet: Fleet, pki: PKI, number: int) -> dict:
    """One side-by-side round: ping, ours twice, baseline twice."""
    work = runner.work / "material"
    measured = {"ping": runner.ping()}
    for playbook in ("ours", "baseline"):
        leaf, extra = new_material(pki, work / f"{playbook}-{number}")
        measured[f"{playbook}_deploy"] = runner.playbook(playbook, extra)
        check_served(fleet, leaf, f"the {playbook} deploy")
        measured[f"{playbook}_rerun"] = runner.playbook(playbook, extra)
        check_served(fleet, leaf, f"the {playbook} rerun")
    return measured


def module_pass(runner: Runner, fleet: Fleet, pki: PKI) -> list:
    """Every module execution of both playbooks and a ping, on a few hosts."""
    log = runner.work / "modules.jsonl"
    wrapper = runner.work / "rss-python"
    wrapper.write_text(RSS_WRAPPER.format(python=sys.executable, log=str(log)))
    wrapper.chmod(0o755)
    hosts = ",".join(h.name for h in fleet.hosts[:MODULE_PASS_HOSTS])
    args = ("--limit", hosts, "-e", f"ansible_python_interpreter={wrapper}")
    records = []
    for playbook in ("ours", "baseline"):
        extra = new_material(pki, runner.work / "material" / f"{playbook}-memory")[1]
        for phase in ("deploy", "rerun"):
            log.unlink(missing_ok=True)
            runner.playbook(playbook, extra, *args)
            records += [dict(json.loads(line), playbook=playbook, phase=phase)
                        for line in log.read_text().splitlines()]
    log.unlink(missing_ok=True)
    runner.ping(*args)
    records += [dict(json.loads(line), playbook="ping", phase="ping")
                for line in log.read_text().splitlines()]
    return records


# Import cost per module, measured the way AnsiballZ runs a module: its code
# compiled from source (no .pyc), the Python installation's own .pyc in use.
IMPORTS = {
    "ansible.module_utils.basic (every module)": "import ansible.module_utils.basic",
    "ssl": "import ssl",
    "cryptography.x509": "from cryptography import x509",
    "nginx_certificate's own code": (
        "import ansible_collections.certfleet.deploy.plugins.modules"
        ".nginx_certificate"),
}
IMPORT_PROBE = """
import sys, time
sys.path.insert(0, {path!r})
import ansible.module_utils.basic, ssl
from cryptography import x509
started = time.process_time()
{statement}
print(round((time.process_time() - started) * 1000, 1))
"""


def import_costs(work: Path, runs: int = 5) -> dict:
    """CPU milliseconds of each import, on top of the ones before it."""
    source = work / "imports" / "ansible_collections" / "certfleet" / "deploy"
    shutil.copytree(REPO / "plugins", source / "plugins",
                    ignore=shutil.ignore_patterns("__pycache__"))
    costs = {}
    for name, statement in IMPORTS.items():
        if "nginx_certificate" in name:
            code = IMPORT_PROBE.format(path=str(work / "imports"), statement=statement)
        else:
            code = (f"import sys, time\nstarted = time.process_time()\n{statement}\n"
                    "print(round((time.process_time() - started) * 1000, 1))")
        samples = []
        for _run in range(runs):
            proc = subprocess.run([sys.executable, "-B", "-c", code], cwd=work,
                                  capture_output=True, text=True, check=True)
            samples.append(float(proc.stdout.strip()))
        costs[name] = report.spread(samples)
    return costs


def preflight() -> None:
    missing = [p for p in (NGINX_BINARY, shutil.which("openssl") or "openssl",
                           str(BIN / "ansible-playbook"))
               if not os.access(p, os.X_OK)]
    if missing:
        raise SystemExit(f"bench: missing {', '.join(missing)}; run make deps")
    if not (COLLECTIONS / "ansible_collections" / "certfleet" / "deploy").exists():
        raise SystemExit(f"bench: {COLLECTIONS} has no certfleet.deploy; "
                         "run make deps")


def parse_args(argv: list | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--hosts", type=int, default=50, help="fleet size (50)")
    parser.add_argument("--forks", type=int, default=10, help="Ansible forks (10)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="side-by-side rounds (3); medians are reported")
    parser.add_argument("--out", type=Path, default=REPO / ".build" / "bench",
                        help="where bench.json and bench.md go (.build/bench)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the work directory (logs, inventory)")
    return parser.parse_args(argv)


def main(argv: list | None = None) -> int:
    args = parse_args(argv)
    preflight()
    work = Path(tempfile.mkdtemp(prefix="certfleet-bench-"))
    pki = PKI("Certfleet Bench")
    machine = report.machine(REPO)
    fleet = Fleet(work, args.hosts, pki.leaf(key_type="ecdsa"))
    try:
        fleet.start()
        runner = Runner(work, fleet.write_inventory(work / "inventory.yml"),
                        args.forks)
        runner.ping()  # warm caches; not counted
        rounds = []
        for number in range(args.repeat):
            rounds.append(repetition(runner, fleet, pki, number))
            print(f"bench: round {number + 1}/{args.repeat} done", flush=True)
        modules = module_pass(runner, fleet, pki)
        imports = import_costs(work)
    except BaseException:
        args.keep = True
        raise
    finally:
        fleet.stop()
        if args.keep:
            print(f"bench: work directory kept at {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    machine["load_after"] = list(os.getloadavg())
    result = report.build(vars(args), machine, rounds, modules, imports)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench.json").write_text(json.dumps(result, indent=1, default=str))
    table = report.markdown(result)
    (args.out / "bench.md").write_text(table)
    print(table)
    print(f"bench: wrote {args.out / 'bench.json'} and {args.out / 'bench.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
