"""Each page of the studio, in a real browser against a real server: what it shows, and
what a user does with it."""

from __future__ import annotations

import re

from tests.studio.conftest import shot, sign_in, wait_js

DASH = "\u2013"  # the studio writes ranges with an en dash


def test_sign_in_is_required_and_a_wrong_token_is_refused(page, studio):
    from runyard import Experiment

    wanted = f"/experiments/{Experiment(studio.ws, 'mnist-train').id}"
    page.goto(studio.url + wanted)
    page.wait_for_selector("#token")
    assert page.locator("h1").inner_text() == "Sign in to runyard"
    shot(page, "sign-in")
    page.fill("#token", "not-a-token")
    page.click("button[type=submit]")
    page.wait_for_selector("#signin-error:has-text('refused')")
    assert "not known" in page.inner_text("#signin-error")
    page.fill("#token", studio.token)
    page.click("button[type=submit]")
    page.wait_for_selector("#who button")  # signed in, on the page that was asked for
    assert page.url.endswith(wanted)
    page.wait_for_selector("#runs-table")
    cookies = {c["name"]: c for c in page.context.cookies()}
    session = next(c for n, c in cookies.items() if n.startswith("runyard_session"))
    assert session["httpOnly"] and session["sameSite"] == "Strict"
    assert page.evaluate("document.cookie").find(studio.token) == -1  # not readable by scripts
    page.click("#who button")  # sign out
    page.wait_for_selector("#token")
    page.goto(studio.url + "/")
    page.wait_for_selector("#token")


def test_experiments_page_counts_runs_by_status(page, studio):
    sign_in(page, studio)
    row = page.locator("tr[data-experiment='mnist-train']")
    row.wait_for()
    assert row.locator("td").nth(1).inner_text() == "3"
    statuses = row.locator("td").nth(2).inner_text()
    assert "Completed" in statuses and "2" in statuses and "Failed" in statuses
    assert page.locator("tr[data-experiment='empty'] td").nth(1).inner_text() == "0"
    shot(page, "experiments")


def test_runs_table_filters_sorts_and_expands_children(page, studio):
    sign_in(page, studio)
    page.click("text=mnist-train")
    page.wait_for_selector("#runs-table tbody tr")
    rows = page.locator("#runs-table tbody tr")
    assert rows.count() == 3
    # the rows come first, the number of matches after them
    wait_js(page, f"document.querySelector('#run-count').textContent === 'Runs 1{DASH}3 of 3'")
    header = page.inner_text("#runs-table thead")
    assert "final_acc (last)" in header and "loss (last)" in header
    shot(page, "runs")
    page.fill("#run-filter", "tags.team = nlp")
    page.press("#run-filter", "Enter")
    wait_js(page, "document.querySelectorAll('#runs-table tbody tr').length === 1")
    assert "resnet-2" in page.inner_text("#runs-table tbody")
    assert "filter=tags.team" in page.url  # the filter is kept in the address
    page.fill("#run-filter", "metrics.final_acc >= 0.91 and status = Completed")
    page.press("#run-filter", "Enter")
    wait_js(page, f"document.querySelector('#run-count').textContent === 'Runs 1{DASH}1 of 1'")
    assert "resnet-2" in page.inner_text("#runs-table tbody")
    page.fill("#run-filter", "metrics.final_acc > lots")
    page.press("#run-filter", "Enter")
    page.wait_for_selector("#filter-error:has-text('compared with a number')")
    page.fill("#run-filter", "")
    page.press("#run-filter", "Enter")
    wait_js(page, "document.querySelectorAll('#runs-table tbody tr').length === 3")
    page.click("#runs-table th button:has-text('final_acc')")  # ascending
    page.wait_for_selector("#runs-table th[aria-sort=ascending]")
    names = page.locator("#runs-table tbody tr td:nth-child(3)").all_inner_texts()
    assert names == ["resnet-0", "resnet-1", "resnet-2"]
    page.click("#runs-table th button:has-text('final_acc')")  # descending
    page.wait_for_selector("#runs-table th[aria-sort=descending]")
    wait_js(
        page,
        "document.querySelector('#runs-table tbody tr td:nth-child(3)').textContent === 'resnet-2'",
    )
    first = page.locator("#runs-table tbody tr").first
    first.locator("button.expander").click()
    page.wait_for_selector("#runs-table tr.child")
    assert page.locator("#runs-table tr.child").count() == 3
    shot(page, "runs-children")


def test_run_page_shows_details_metrics_files_and_children(page, studio):
    sign_in(page, studio)
    from runyard import Experiment

    runs = Experiment(studio.ws, "mnist-train").get_runs()
    run = next(r for r in runs if r.display_name == "resnet-1")
    page.goto(f"{studio.url}/runs/{run.id}")
    page.wait_for_selector("#status-history")
    assert page.inner_text("h1") == f"Run {run.number}: resnet-1"
    assert "Failed" in page.inner_text("#run-status")
    assert "the data loader broke" in page.inner_text("#run-error")
    history = page.locator("#status-history tbody tr").all_inner_texts()
    assert "Running" in history[0] and "Failed" in history[-1]
    assert "team" in page.inner_text("#tags") and "lr" in page.inner_text("#properties")
    assert page.locator("#cancel-run").is_hidden()  # a finished run cannot be canceled
    shot(page, "run-overview")
    # tags are editable
    page.fill("#tags input[aria-label='Tag name']", "reviewed")
    page.fill("#tags input[aria-label='Tag value']", "yes")
    page.click("#tags button[type=submit]")
    page.wait_for_selector("#tags td:has-text('yes')")
    assert studio.ws.get_run(run.id).tags["reviewed"] == "yes"
    page.click("#tab-Metrics")
    page.wait_for_selector("[data-metric='loss'] .chart[data-drawn]")
    page.wait_for_selector("[data-metric='cm'] .chart[data-drawn]")
    page.wait_for_selector("[data-metric='epoch_xy'] .chart[data-drawn]")
    page.wait_for_selector("[data-metric='losses'] .chart[data-drawn]")
    assert "final_acc" in page.inner_text("#single-values")
    assert page.locator("[data-metric='loss'] .chart").get_attribute("data-points") == "300"
    assert page.locator("[data-metric='cm'] .heatmaplayer").count() == 1
    page.click("[data-metric='loss'] button:has-text('log scale')")
    wait_js(
        page, "document.querySelector(\"[data-metric='loss'] .chart\").layout.yaxis.type === 'log'"
    )
    shot(page, "run-metrics")
    page.click("#tab-Files")
    page.wait_for_selector("#files")
    assert "cm" in page.inner_text("#files")
    page.click("#tab-Children")
    page.wait_for_selector("#children")
    assert page.locator("#children tbody tr").count() == 3
    page.keyboard.press("ArrowLeft")  # the tabs answer to the keyboard
    assert page.get_attribute("#tab-Files", "aria-selected") == "true"


def test_compare_overlays_a_metric_and_marks_differences(page, studio):
    from runyard import Experiment

    runs = list(Experiment(studio.ws, "mnist-train").get_runs())
    sign_in(page, studio)
    page.goto(f"{studio.url}/experiments/{runs[0].experiment.id}")
    page.wait_for_selector("#runs-table tbody tr")
    for box in page.locator("#runs-table tbody input[type=checkbox]").all()[:2]:
        box.check()
    page.click("#compare")
    page.wait_for_selector("#compare-chart[data-drawn]")
    page.select_option("#compare-metric", "loss")
    wait_js(page, "document.querySelector('#compare-chart').data.length === 2")
    assert page.locator("#compare-table tr.diff[data-key='property.lr']").count() == 1
    assert page.locator("#compare-table tr.diff[data-key='property.model']").count() == 0
    shot(page, "compare")
    parent = runs[0]
    page.goto(f"{studio.url}/compare?parent={parent.id}")
    page.wait_for_selector("#sweep-scatter[data-drawn]")
    points = page.evaluate("document.querySelector('#sweep-scatter').data[0].x")
    assert sorted(points) == [0, 0.1, 0.2]
    shot(page, "compare-sweep")


def test_dark_mode_follows_the_system(browser, studio):
    context = browser.new_context(color_scheme="dark", viewport={"width": 1400, "height": 900})
    page = context.new_page()
    sign_in(page, studio)
    page.wait_for_selector("tr[data-experiment]")
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert re.fullmatch(r"rgb\((\d+), (\d+), (\d+)\)", background)
    assert sum(int(x) for x in re.findall(r"\d+", background)) < 150
    shot(page, "experiments-dark")
    context.close()
