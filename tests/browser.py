"""Headless Debian chromium driven by Playwright, for the UI and dashboard tests.

Screenshots land in ``test-artifacts/`` (``LAKEHOUSE_TEST_ARTIFACTS`` overrides), kept
after the run for a human (or CI) to look at.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]


def artifacts_dir() -> Path:
    path = Path(os.environ.get("LAKEHOUSE_TEST_ARTIFACTS", PROJECT / "test-artifacts"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def chromium() -> str:
    """Path to chromium; skip when missing locally, fail under CI (``make setup`` installs it)."""
    from tests.conftest import require_tool

    return os.environ.get("CHROMIUM") or require_tool(
        "chromium", "chromium-browser", hint="Debian: apt-get install chromium; `make setup` does it")


@contextlib.contextmanager
def page(width: int = 1400, height: int = 900) -> Iterator[tuple[object, list[str]]]:
    """A fresh page and the list its console errors and uncaught exceptions are collected in."""
    from playwright.sync_api import sync_playwright

    executable = chromium()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=["--no-sandbox", "--disable-gpu"])
        try:
            tab = browser.new_page(viewport={"width": width, "height": height})
            errors: list[str] = []
            tab.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            tab.on("pageerror", lambda e: errors.append(f"uncaught: {e}"))
            yield tab, errors
        finally:
            browser.close()


def log_in(tab, url: str, password: str) -> None:
    """Sign in to Airflow's UI at ``url`` as admin (the simple auth manager's login form)."""
    tab.goto(f"{url}/")
    tab.wait_for_selector("input[type=password]", timeout=60_000)
    tab.locator("input:not([type=password])").first.fill("admin")
    tab.locator("input[type=password]").fill(password)
    tab.keyboard.press("Enter")
    tab.wait_for_url(lambda current: "/auth/" not in current, timeout=60_000)
