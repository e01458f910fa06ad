"""Browser tests of the studio: Playwright driving a real headless Chromium (Debian's
``chromium``) against a real ``runyard serve`` on a port, over a workspace of real runs.

The ``browser`` fixture is in tests/conftest.py (one Playwright for the whole session).
Each test saves screenshots in ``build/screenshots/``.
"""

from __future__ import annotations

import math
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from runyard import Experiment, Workspace

SHOTS = Path(__file__).resolve().parents[2] / "build" / "screenshots"


@dataclass
class Studio:
    url: str
    token: str
    ws: Workspace
    root: Path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def populate(ws: Workspace) -> None:
    """Runs of every kind the pages draw."""
    exp = Experiment(ws, "mnist-train")
    for i in range(3):
        run = exp.start_logging(display_name=f"resnet-{i}", snapshot_directory=None)
        run.tag("team", "vision" if i < 2 else "nlp")
        run.add_properties({"lr": str(0.01 * (i + 1)), "model": "resnet"})
        run.log_list("losses", [1.0, 0.5, 0.3, 0.25])
        for step in range(300):
            run.log("loss", math.exp(-step / 100) + i / 10, step=step)
        run.log("final_acc", 0.9 + i / 100)
        for epoch in range(5):
            run.log_row("epoch_xy", epoch=epoch, val=0.5 + epoch / 10, train=0.4 + epoch / 9)
        run.log_confusion_matrix("cm", {"class_labels": ["cat", "dog"], "matrix": [[5, 1], [2, 7]]})
        for k in range(3):
            child = run.child_run(name=f"alpha-{k}")
            child.add_properties({"alpha": str(k / 10)})
            child.log("rmse", 50 - k * 3 - i)
            child.complete()
        if i == 1:
            run.fail(error_details="the data loader broke", error_code="UserError")
        else:
            run.complete()
    Experiment(ws, "empty")


@pytest.fixture(scope="module")
def studio(tmp_path_factory) -> Iterator[Studio]:
    """``runyard serve`` (a real process, auth on) over a workspace with runs."""
    root = tmp_path_factory.mktemp("studio")
    ws = Workspace(str(root / "ws"))
    populate(ws)
    port = _free_port()
    command = [os.path.join(os.path.dirname(sys.executable), "runyard"), "serve",
               "--workspace", ws.uri, "--port", str(port)]  # fmt: skip
    server = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=root
    )
    token, seen = None, []
    deadline = time.monotonic() + 60
    assert server.stdout is not None
    while time.monotonic() < deadline:
        line = server.stdout.readline()
        seen.append(line)
        if token is None and re.fullmatch(r"\s+\S{20,}\s*", line):
            token = line.strip()
        if "runyard serves" in line or not line:
            break
    assert token is not None, "".join(seen)
    url = f"http://127.0.0.1:{port}"
    import httpx

    for _ in range(200):
        try:
            if httpx.get(f"{url}/api/health").status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.05)
    try:
        yield Studio(url, token, ws, root)
    finally:
        server.terminate()
        server.wait(timeout=30)


def _counts(message) -> bool:
    """A console message that fails a test: an error that is not an HTTP answer the test
    asked for (a 400 to a bad filter) or the absence of WebGL in a headless browser. A
    refusal by the Content-Security-Policy counts."""
    text = message.text
    return (
        message.type == "error"
        and not text.startswith("Failed to load resource")
        and ("WebGL" not in text)
    )


@pytest.fixture
def page(browser, studio, request):
    """A fresh browser context (no cookies) and its page; script errors fail the test."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda m: errors.append(m.text) if _counts(m) else None)
    yield page
    context.close()
    assert not errors, f"the page logged errors: {errors}"


def sign_in(page, studio: Studio, path: str = "/") -> None:
    page.goto(studio.url + path)
    page.fill("#token", studio.token)
    page.click("button[type=submit]")
    page.wait_for_selector("#who button")


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def wait_js(page, expression: str, timeout: float = 30.0) -> None:
    """Wait until ``expression`` is true in the page. (Playwright's wait_for_function
    evaluates text, which the studio's Content-Security-Policy rightly forbids.)"""
    deadline = time.monotonic() + timeout
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout} s: {expression}")
        time.sleep(0.05)
