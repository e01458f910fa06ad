"""get_runs(filter=...) and get_children(filter=...): the studio's filter text in the SDK
and in ``runyard run list --filter``, on every kind of workspace."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from runyard import Experiment
from runyard.errors import UserError


def _runs(ws):
    exp = Experiment(ws, "filtered")
    made = []
    for i in range(4):
        run = exp.start_logging(display_name=f"model-{i}", snapshot_directory=None)
        run.tag("team", "vision" if i % 2 else "nlp")
        run.log("acc", i / 4)
        run.flush()
        made.append(run)
    made[3].complete()
    return exp, made


def test_get_runs_takes_the_studio_filter(ws):
    exp, made = _runs(ws)
    found = exp.get_runs(filter="tags.team = vision and metrics.acc > 0.2")
    assert [r.id for r in found] == [made[3].id, made[1].id]
    assert [r.id for r in exp.get_runs(filter="status = completed")] == [made[3].id]
    assert [r.id for r in exp.get_runs(tags={"team": "nlp"}, filter="model-2")] == [made[2].id]
    kids = [made[0].child_run(name=f"k{i}") for i in range(3)]
    kids[1].add_properties({"alpha": "0.5"})
    assert [k.id for k in made[0].get_children(filter="properties.alpha")] == [kids[1].id]
    with pytest.raises(UserError, match="compared with a number"):
        list(exp.get_runs(filter="metrics.acc > high"))


def test_run_list_filter(local_ws):
    from runyard.cli import main

    _, made = _runs(local_ws)
    args = ["run", "list", "-e", "filtered", "--workspace", local_ws.uri, "-o", "json"]
    with CliRunner().isolation() as (out, err, _):
        code = main([*args, "--filter", "tags.team = vision and metrics.acc > 0.2"])
    assert code == 0, err.getvalue()
    assert [r["run_id"] for r in json.loads(out.getvalue())] == [made[3].id, made[1].id]
    with CliRunner().isolation() as (out, err, _):
        code = main([*args, "--filter", "tags.team = "])
    assert code != 0 and "ends too early" in err.getvalue().decode()
