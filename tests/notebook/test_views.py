"""How runs look in a notebook (_repr_html_, lists of runs) and where their studio
pages are (get_portal_url), on every kind of workspace."""

from __future__ import annotations

import json
import os
import socket

from runyard import Experiment
from runyard.notebook import _list_html
from runyard.workspace import DEFAULT_STUDIO_URL, STUDIO_FILE


def test_run_and_experiment_render_as_tables_with_studio_links(ws):
    exp = Experiment(ws, "views <b>")
    run = exp.start_logging(display_name="<script>alert(1)</script>")
    page = run._repr_html_()
    assert "<table>" in page and run.id in page and "Running" in page
    assert f'href="{run.get_portal_url()}"' in page
    assert "views &lt;b&gt;" in page and "views <b>" not in page
    assert exp.get_portal_url() in exp._repr_html_() and "views &lt;b&gt;" in exp._repr_html_()
    listing = _list_html([run])
    assert listing is not None and "&lt;script&gt;" in listing and "<script>" not in listing
    assert _list_html([1, 2]) is None and _list_html([]) is None  # other lists as always
    many = [run] * 25
    assert "The first 20 of 25 runs" in _list_html(many)


def test_portal_urls_name_the_studio_pages(ws):
    exp = Experiment(ws, "portal")
    run = exp.start_logging()
    # a server's pages, or where runyard studio starts (none runs on this workspace)
    root = ws.uri if ws.uri.startswith("http") else DEFAULT_STUDIO_URL
    assert run.get_portal_url() == f"{root}/runs/{run.id}"
    assert exp.get_portal_url() == f"{root}/experiments/{exp.id}"


def test_a_running_studio_is_found_and_a_stale_one_is_not(local_ws):
    run = Experiment(local_ws, "portal").start_logging()
    marker = os.path.join(local_ws._local_folder, STUDIO_FILE)
    here = {"url": "http://127.0.0.1:8765", "pid": os.getpid(), "host": socket.gethostname()}
    with open(marker, "w") as fh:
        json.dump(here, fh)
    assert run.get_portal_url() == f"http://127.0.0.1:8765/runs/{run.id}"
    for stale in (
        {**here, "pid": 2**22 + 12345},  # no such process
        {**here, "host": "another-machine"},
        {"url": 5},
    ):
        with open(marker, "w") as fh:
            json.dump(stale, fh)
        assert run.get_portal_url() == f"{DEFAULT_STUDIO_URL}/runs/{run.id}"
    with open(marker, "w") as fh:
        fh.write("{not json")
    assert run.get_portal_url().startswith(DEFAULT_STUDIO_URL)


def test_run_show_prints_the_portal_url(local_ws):
    from click.testing import CliRunner

    from runyard.cli import main

    run = Experiment(local_ws, "portal").start_logging()
    for output in ("json", "table"):
        with CliRunner().isolation() as (out, err, _):
            code = main(["run", "show", "-r", run.id, "--workspace", local_ws.uri, "-o", output])
        assert code == 0, err.getvalue()
        text = out.getvalue().decode()
        if output == "json":
            assert json.loads(text)["portal_url"] == run.get_portal_url()
        else:
            assert run.get_portal_url() in text
