"""Faults in how the module is run: an owner that does not exist, and ten
deploys of different certificates at once (some of them killed)."""

from __future__ import annotations

import json

import pytest

from tests.faults import harness
from tests.faults.adapters import ADAPTERS, params
from tests.faults.harness import Deploys

CONCURRENT = 10


@pytest.mark.parametrize("adapter", params(engine=True))
@pytest.mark.parametrize("option", ["owner", "group"])
def test_owner_that_does_not_exist(adapter, site, pki, tmp_path, faults, option):
    """Refused before anything is touched; not even the state directory."""
    deploys = Deploys(adapter, site, pki.leaf(key_type="ecdsa"), tmp_path)
    leaf, state, args = deploys.next()
    with faults.inject(f"{option} does not exist"):
        failed = harness.run(adapter, dict(args, **{option: "certfleet-nobody"}),
                             deploys.log("fault"))
        deploys.check_clean_failure(state, failed, "does not exist")
        assert not state.exists()
        recovery = harness.run(adapter, args, deploys.log("recovery"))
        deploys.check_recovered(leaf, state, recovery, journal_open=False)


@pytest.mark.parametrize("adapter,killed", [
    pytest.param(a, k, id=f"{a.name}-{k}-killed") for a in ADAPTERS
    for k in ((0, 3) if a.engine else (3,))])
def test_ten_deploys_at_once(adapter, site, pki, tmp_path, faults, killed) -> None:
    """Ten deploys of ten certificates share one target. They take turns on
    its lock; a killed one leaves a journal that the next one recovers. At
    the end one of the ten is served, whole, with its own key on disk (or a
    killed one was last, and the next run recovers its journal)."""
    leaves = [pki.leaf(key_type="ecdsa") for _number in range(CONCURRENT)]
    deploys = Deploys(adapter, site, leaves[0], tmp_path)
    deploys.leaves = [site.leaf, *leaves]
    state = tmp_path / "state"
    procs = []
    for number, leaf in enumerate(leaves):
        args = adapter.args(site, leaf, tmp_path / "material", state,
                            lock_timeout=120)
        log = tmp_path / f"log-{number}.jsonl"
        dies = number % 3 == 1 and number // 3 < killed
        procs.append((harness.start(adapter, args, log, "os.replace" if dies else "",
                                    4 if dies else 0), log, dies))
    with faults.inject(f"ten deploys at once ({killed} killed)"):
        runs = [(harness.finish(proc, log), dies) for proc, log, dies in procs]
        for run_, dies in runs:
            if dies:
                assert run_.killed, run_.describe()
            else:
                assert run_.result.get("failed") is not True, run_.result["msg"]
        journal_open = deploys.check_fault(state, *(run_ for run_, _dies in runs))
        served = harness.served_whole(adapter, site, deploys.leaves)
        on_disk, matches = harness.pair_on_disk(site)
        if not journal_open:
            assert matches and served == {on_disk}
            assert on_disk in {leaf.sha256 for leaf in leaves}
            assert harness.leftovers(site.live_dir, state) == []
        results = {f"result {n}": json.dumps(r.result)
                   for n, (r, dies) in enumerate(runs) if not dies}
        harness.assert_no_key_bytes(results, deploys.leaves)
        final = adapter.args(site, leaves[0], tmp_path / "material", state)
        recovery = harness.run(adapter, final, tmp_path / "log-final.jsonl")
        deploys.check_recovered(leaves[0], state, recovery, journal_open)
