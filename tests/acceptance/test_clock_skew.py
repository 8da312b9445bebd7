"""Workers on machines whose clocks disagree share one PostgreSQL database: leases are timed by
the database server's clock, so a worker whose clock runs a minute ahead does not take a live
lease for an expired one (and run the phase a second time beside its holder), and it is told
that its clock is off. PostgreSQL's own: on SQLite every worker reads this machine's clock."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from storyflow.domain.statuses import Status
from tests.run_support import FAKES, configure, epic_with, runs_of, scenario
from tests.support import Workspace

SKEW_SECONDS = 60


def _skewed(ws: Workspace, *args: str) -> subprocess.Popen[str]:
    """``storyflow ARGS`` as run on a machine whose clock is SKEW_SECONDS ahead."""
    clock = FAKES / "skewed_clock"
    skew = {"PYTHONPATH": str(clock), "STORYFLOW_TEST_CLOCK_SKEW": str(SKEW_SECONDS)}
    return ws.spawn(*args, extra_env=skew)


def test_a_worker_whose_clock_runs_ahead_leaves_a_live_lease_alone(workspace: Workspace) -> None:
    if workspace.database_url is None:
        pytest.skip("PostgreSQL's own (workers on one machine share its clock)")
    scenario(workspace, {"phases": {"implement": {"delay": 3}}})
    configure(workspace, {"scenario": "scenario.yaml"})  # leases of 2 s
    ctx = workspace.ctx()
    (story,) = epic_with(ctx, 1)
    here = workspace.spawn("worker", "--epic", "FLOW", "--until-idle", "--json")
    deadline = time.monotonic() + 60
    while not any(r["phase"] == "implement" for r in runs_of(ctx, story)):
        assert time.monotonic() < deadline, "the implement phase never started"
        time.sleep(0.05)

    ahead = _skewed(workspace, "worker", "--epic", "FLOW", "--until-idle", "--json")
    ahead_out, ahead_err = ahead.communicate(timeout=120)
    here_out, here_err = here.communicate(timeout=120)
    assert here.returncode == 0, here_err
    assert ahead.returncode == 0, ahead_err
    assert f"this machine's clock is {SKEW_SECONDS} s ahead of the database server's" in ahead_err
    assert "clock is" not in here_err, here_err

    assert ctx.story(story).status is Status.COMPLETED
    implement = [
        (r["attempt"], r["status"]) for r in runs_of(ctx, story) if r["phase"] == "implement"
    ]
    assert implement == [(1, "succeeded")]
    assert json.loads(here_out)["takeovers"] == 0
    assert json.loads(ahead_out)["takeovers"] == 0
