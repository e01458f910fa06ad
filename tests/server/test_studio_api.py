"""The studio's side of the server: its pages and files, signing in with a session cookie
(HttpOnly, SameSite=Strict) guarded against CSRF, runyard studio's one-time link, and the
reads the pages draw from (overview, counts, filters, status history, sampled series,
points, cancel). A real server on a port, real HTTP."""

from __future__ import annotations

import math
import time

import httpx
import pytest

from runyard.records import NewRun, SeriesAppend

pytestmark = pytest.mark.usefixtures("ws_uri")


@pytest.fixture
def served(live_server, ws_uri, tmp_path):
    """A server with auth on, an admin, a contributor and a reader token."""
    uri, artifacts = ws_uri
    url = live_server(uri, auth=True, artifacts=artifacts or str(tmp_path / "artifacts"))
    store = url.store
    secrets = {
        role: store.create_token(f"{role}-studio", role)[1]
        for role in ("admin", "contributor", "reader")
    }
    return url, store, secrets


def _signed_in(url: str, token: str) -> httpx.Client:
    client = httpx.Client(base_url=url, timeout=30)
    answer = client.post("/api/v1/session", json={"token": token})
    assert answer.status_code == 200, answer.text
    return client


def test_pages_are_one_shell_with_strict_headers_and_no_data(served):
    url, _, _ = served
    for path in ("/", "/experiments/abc", "/runs/some-run", "/compare?runs=a,b", "/login"):
        answer = httpx.get(url + path)
        assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/html")
        assert '<script type="module" src="/static/app.js' in answer.text
        policy = answer.headers["content-security-policy"]
        assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
        assert answer.headers["x-frame-options"] == "DENY"
        assert answer.headers["cache-control"] == "no-store"
    assert httpx.get(url + "/api/v1/experiments").status_code == 401  # the data needs a token


def test_static_files_and_plotly_are_served_gzipped_with_etags(served):
    url, _, _ = served
    for name in ("app.js", "api.js", "runs.js", "run.js", "studio.css"):
        answer = httpx.get(f"{url}/static/{name}")
        assert answer.status_code == 200 and answer.headers["content-encoding"] == "gzip"
        etag = answer.headers["etag"]
        again = httpx.get(f"{url}/static/{name}", headers={"If-None-Match": etag})
        assert again.status_code == 304
    plotly = httpx.get(f"{url}/vendor/plotly.min.js")
    assert plotly.status_code == 200 and b"plotly.js v" in plotly.content[:300]
    assert int(plotly.headers["content-length"]) < len(plotly.content) / 2  # it went gzipped
    for bad in ("../__init__.py", "..%2F__init__.py", "index.html", "nope.js", "%00.js"):
        assert httpx.get(f"{url}/static/{bad}").status_code in (400, 404)


def test_a_token_signs_in_with_an_httponly_strict_cookie(served):
    url, _, secrets = served
    answer = httpx.post(f"{url}/api/v1/session", json={"token": secrets["reader"]})
    assert answer.status_code == 200 and answer.json() == {
        "name": "reader-studio",
        "role": "reader",
    }
    cookies = answer.headers.get_list("set-cookie")
    port = httpx.URL(url).port
    session = next(c for c in cookies if c.startswith(f"runyard_session_{port}="))
    assert "HttpOnly" in session and "SameSite=strict" in session and "Path=/" in session
    assert secrets["reader"] in session
    csrf = next(c for c in cookies if c.startswith(f"runyard_csrf_{port}="))
    assert "HttpOnly" not in csrf and "SameSite=strict" in csrf
    client = _signed_in(url, secrets["reader"])
    assert client.get("/api/v1/whoami").json()["name"] == "reader-studio"


@pytest.mark.parametrize("token", ["wrong", "x" * 4096, "\u00e9t\u00e9", " "])
def test_a_wrong_token_is_refused_and_sets_no_cookie(served, token):
    url, _, _ = served
    answer = httpx.post(f"{url}/api/v1/session", json={"token": token})
    assert answer.status_code in (400, 401) and not answer.headers.get_list("set-cookie")
    form = httpx.post(f"{url}/api/v1/session", content=f"token={token}",
                      headers={"Content-Type": "application/x-www-form-urlencoded"})  # fmt: skip
    assert form.status_code == 400 and not form.headers.get_list("set-cookie")


def test_changes_by_cookie_need_the_csrf_header(served):
    url, store, secrets = served
    client = _signed_in(url, secrets["contributor"])
    exp = store.get_or_create_experiment("csrf")
    store.create_runs(exp.id, [NewRun(id="csrf-run")])
    port = httpx.URL(url).port
    csrf = client.cookies[f"runyard_csrf_{port}"]
    refused = client.patch("/api/v1/runs/csrf-run/tags", json={"set": {"a": "1"}})
    assert refused.status_code == 403 and "X-Runyard-CSRF" in refused.json()["error"]["message"]
    wrong = client.patch("/api/v1/runs/csrf-run/tags", json={"set": {"a": "1"}},
                         headers={"X-Runyard-CSRF": csrf + "x"})  # fmt: skip
    assert wrong.status_code == 403 and store.get_run("csrf-run").tags == {}
    done = client.patch("/api/v1/runs/csrf-run/tags", json={"set": {"a": "1"}},
                        headers={"X-Runyard-CSRF": csrf})  # fmt: skip
    assert done.status_code == 200 and store.get_run("csrf-run").tags == {"a": "1"}
    assert client.get("/api/v1/runs/csrf-run").status_code == 200  # reads need no header
    # a bearer token is not ambient: it needs no CSRF header
    bearer = httpx.patch(f"{url}/api/v1/runs/csrf-run/tags", json={"set": {"b": "2"}},
                         headers={"Authorization": f"Bearer {secrets['contributor']}"})  # fmt: skip
    assert bearer.status_code == 200


def test_sign_out_clears_the_cookie_and_a_revoked_token_ends_the_session(served):
    url, store, secrets = served
    client = _signed_in(url, secrets["admin"])
    port = httpx.URL(url).port
    csrf = client.cookies[f"runyard_csrf_{port}"]
    out = client.delete("/api/v1/session", headers={"X-Runyard-CSRF": csrf})
    assert out.status_code == 204 and client.get("/api/v1/whoami").status_code == 401
    client = _signed_in(url, secrets["reader"])
    store.revoke_token("reader-studio")
    assert client.get("/api/v1/whoami").status_code == 401


def test_a_reader_cannot_cancel_or_tag_through_the_studio(served):
    url, store, secrets = served
    exp = store.get_or_create_experiment("readers")
    store.create_runs(exp.id, [NewRun(id="read-only")])
    client = _signed_in(url, secrets["reader"])
    csrf = client.cookies[f"runyard_csrf_{httpx.URL(url).port}"]
    answer = client.post("/api/v1/runs/read-only/cancel", headers={"X-Runyard-CSRF": csrf})
    assert answer.status_code == 403 and store.get_run("read-only").status == "Running"


def test_the_one_time_link_of_runyard_studio_signs_in_once(live_server, ws_uri, tmp_path):
    uri, artifacts = ws_uri
    url = live_server(uri, auth=True, artifacts=artifacts or str(tmp_path / "a"),
                      studio_secret="s" * 40, login_code="c" * 30)  # fmt: skip
    client = httpx.Client(base_url=url)
    assert client.get("/api/v1/whoami").status_code == 401
    wrong = client.get("/login", params={"code": "d" * 30})
    assert wrong.status_code == 303 and wrong.headers["location"] == "/login?link=used"
    answer = client.get("/login", params={"code": "c" * 30, "next": "/runs/x"})
    assert answer.status_code == 303 and answer.headers["location"] == "/runs/x"
    assert client.get("/api/v1/whoami").json() == {
        "name": "studio",
        "role": "admin",
        "scope_run_id": None,
    }
    other = httpx.Client(base_url=url)
    again = other.get("/login", params={"code": "c" * 30})
    assert again.headers["location"] == "/login?link=used"
    assert other.get("/api/v1/whoami").status_code == 401
    # no open redirect, whatever next says
    fresh = live_server(uri, auth=True, artifacts=artifacts or str(tmp_path / "a"),
                        studio_secret="t" * 40, login_code="e" * 30)  # fmt: skip
    for target in ("//evil.example/x", "https://evil.example", "/\\evil.example"):
        answer = httpx.get(f"{fresh}/login", params={"code": "e" * 30, "next": target})
        assert answer.headers["location"] in ("/", "/login?link=used")


def test_overview_count_and_filter(served):
    url, store, secrets = served
    exp = store.get_or_create_experiment("table")
    store.create_runs(
        exp.id,
        [
            NewRun(
                id=f"t{i}", display_name=f"resnet-{i}", tags={"team": "vision" if i < 3 else "nlp"}
            )
            for i in range(8)
        ],
    )
    for i in range(8):
        store.log_batch(f"t{i}", [SeriesAppend("acc", "scalar", [0], [i / 10], [time.time()])])
    store.set_status("t1", "Completed")
    client = _signed_in(url, secrets["reader"])
    overview = {
        o["experiment"]["name"]: o for o in client.get("/api/v1/experiments/overview").json()
    }
    assert overview["table"]["runs"] == 8 and overview["table"]["statuses"]["Completed"] == 1
    query = {"experiment_id": exp.id, "top_level_only": True}
    body = {"query": query, "filter": "tags.team = vision and metrics.acc >= 0.1"}
    count = client.post("/api/v1/runs/count", json=body)
    csrf = {"X-Runyard-CSRF": client.cookies[f"runyard_csrf_{httpx.URL(url).port}"]}
    count = client.post("/api/v1/runs/count", json=body, headers=csrf)
    assert count.json() == {"count": 2}
    found = client.post(
        "/api/v1/runs/search",
        json={
            **body,
            "limit": 1,
            "offset": 1,
            "query": {**query, "order": [{"field": "metric", "key": "acc"}]},
        },
        headers=csrf,
    )
    assert [r["id"] for r in found.json()] == ["t2"]
    bad = client.post(
        "/api/v1/runs/search", json={"query": query, "filter": "metrics.acc > lots"}, headers=csrf
    )
    assert bad.status_code == 400 and "compared with a number" in bad.json()["error"]["message"]
    text = client.post(
        "/api/v1/runs/count", json={"query": query, "filter": "resnet-7"}, headers=csrf
    )
    assert text.json() == {"count": 1}


def test_sampled_series_keeps_spikes_and_zooms(served):
    url, store, secrets = served
    exp = store.get_or_create_experiment("long")
    store.create_runs(exp.id, [NewRun(id="long-run")])
    n = 200_000
    values = [math.sin(i / 1000) for i in range(n)]
    values[123_457] = 50.0
    values[77] = math.nan
    store.log_batch("long-run", [SeriesAppend("loss", "scalar", range(n), values, [1.0] * n)])
    client = _signed_in(url, secrets["reader"])
    whole = client.get(
        "/api/v1/runs/long-run/series/sampled", params={"name": "loss", "width": 500}
    ).json()
    assert whole["count"] == n and whole["total"] == n and whole["sampled"] is True
    assert len(whole["steps"]) <= 1000 and 50.0 in whole["values"]
    assert whole["steps"][whole["values"].index(50.0)] == 123_457
    assert whole["steps"] == sorted(whole["steps"])
    assert max(whole["values"]) == 50.0 and min(whole["values"]) == pytest.approx(-1, abs=1e-3)
    zoom_range = {"name": "loss", "width": 500, "start": 1000, "end": 1400}
    zoom = client.get("/api/v1/runs/long-run/series/sampled", params=zoom_range).json()
    assert zoom["count"] == 401 and zoom["sampled"] is False and zoom["steps"][0] == 1000
    assert zoom["steps"][-1] == 1400 and len(zoom["steps"]) == 401
    for params, status in (
        ({"name": "loss", "width": 0}, 400),
        ({"name": "loss", "width": 10**6}, 400),
        ({"name": "nope"}, 404),
        ({"name": "loss", "start": "x"}, 400),
        ({}, 400),
    ):
        answer = client.get("/api/v1/runs/long-run/series/sampled", params=params)
        assert answer.status_code == status, (params, answer.text)


def test_points_of_tables_and_texts_and_sampling_refuses_them(served):
    url, store, secrets = served
    exp = store.get_or_create_experiment("kinds")
    store.create_runs(exp.id, [NewRun(id="kinds-run")])
    rows = [{"x": i, "y": i * i} for i in range(30)]
    store.log_batch("kinds-run", [
        SeriesAppend("xy", "table", [None] * 30, rows, [1.0] * 30),
        SeriesAppend("note", "scalar", [0, 1], ["a", "b"], [1.0, 2.0]),
    ])  # fmt: skip
    client = _signed_in(url, secrets["reader"])
    page = client.get(
        "/api/v1/runs/kinds-run/series/points", params={"name": "xy", "offset": 10, "limit": 5}
    ).json()
    assert page["kind"] == "table" and page["total"] == 30 and page["values"] == rows[10:15]
    for name in ("xy", "note"):
        refused = client.get("/api/v1/runs/kinds-run/series/sampled", params={"name": name})
        assert refused.status_code == 400 and "/series/points" in refused.json()["error"]["message"]
    assert (
        client.get(
            "/api/v1/runs/kinds-run/series/points", params={"name": "xy", "limit": 10**6}
        ).status_code
        == 400
    )


def test_cancel_and_status_history(served):
    url, store, secrets = served
    exp = store.get_or_create_experiment("cancel")
    store.create_runs(exp.id, [NewRun(id="plain"), NewRun(id="supervised", heartbeat=True)])
    store.create_runs(exp.id, [NewRun(id="done")])
    store.set_status("done", "Completed")
    client = _signed_in(url, secrets["contributor"])
    csrf = {"X-Runyard-CSRF": client.cookies[f"runyard_csrf_{httpx.URL(url).port}"]}
    assert client.post("/api/v1/runs/plain/cancel", headers=csrf).json()["status"] == "Canceled"
    answer = client.post("/api/v1/runs/supervised/cancel", headers=csrf)
    assert answer.json()["status"] == "CancelRequested"  # its supervisor stops the processes
    finished = client.post("/api/v1/runs/done/cancel", headers=csrf)
    assert (
        finished.status_code == 400 and "already Completed" in finished.json()["error"]["message"]
    )
    assert store.get_run("done").status == "Completed"
    history = client.get("/api/v1/runs/plain/statuses").json()
    assert [c["status"] for c in history] == ["Running", "Canceled"]
    assert client.get("/api/v1/runs/nope/statuses").status_code == 404


def test_a_change_from_another_origin_is_refused_even_with_the_csrf_cookie(served):
    """Cookies are shared by every port of a host: a page on another port could read the
    CSRF cookie. A change signed in by cookie must come from the studio's own origin."""
    url, store, secrets = served
    exp = store.get_or_create_experiment("origins")
    store.create_runs(exp.id, [NewRun(id="origin-run")])
    client = _signed_in(url, secrets["contributor"])
    csrf = client.cookies[f"runyard_csrf_{httpx.URL(url).port}"]
    for origin in ("http://127.0.0.1:9999", "http://evil.example", "null"):
        answer = client.patch(
            "/api/v1/runs/origin-run/tags",
            json={"set": {"a": "1"}},
            headers={"X-Runyard-CSRF": csrf, "Origin": origin},
        )
        assert answer.status_code == 403, origin
    assert store.get_run("origin-run").tags == {}
    same = client.patch(
        "/api/v1/runs/origin-run/tags",
        json={"set": {"a": "1"}},
        headers={"X-Runyard-CSRF": csrf, "Origin": url},
    )
    assert same.status_code == 200
