"""The demo-time benchmark's ways of waiting and its one-line usage errors (the timing itself is a benchmark, not a test)."""
from __future__ import annotations

import pytest

from occ.benchmarks.demo_time import WAITS, main
from occ.train.openmp import SPIN_COUNT, WAIT_VARIABLES


def test_the_deployed_spin_is_among_the_ways_measured_and_each_way_sets_one_variable():
    assert WAITS[f"spinning {SPIN_COUNT:,} PAUSEs"] == {"GOMP_SPINCOUNT": str(SPIN_COUNT)}
    assert WAITS["spinning"] == {} and WAITS["sleeping"] == {"OMP_WAIT_POLICY": "PASSIVE"}
    assert all(len(env) <= 1 and set(env) <= set(WAIT_VARIABLES) for env in WAITS.values())


@pytest.mark.parametrize("args", [[], ["out.json", "0"], ["out.json", "5", "x"], ["out.json", "5", "2", "-1"], ["a", "1", "1", "1", "1"]])
def test_bad_arguments_get_the_usage_line_and_exit_2(args, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(args) == 2
    assert capsys.readouterr().err.startswith("usage: python -m occ.benchmarks.demo_time OUT.json")
    assert not any(tmp_path.iterdir())
