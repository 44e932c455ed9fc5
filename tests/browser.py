"""A headless Chromium driven over the DevTools protocol: open a page, wait for text, click, screenshot.

``chromium --dump-dom`` sees a page once, after a fixed time budget, and
cannot click: the Dagster UI loads its data after the first paint and keeps
some views (a check's partitions) behind tabs. This drives the same browser
over its DevTools websocket (the ``websockets`` package that
dagster-webserver's server already needs) so a test can wait until the text
it looks for is there, click a tab by its label and keep a screenshot of what
a person would see.
"""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import websockets


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def require_chromium(what: str) -> str:
    """Chromium's path; without it ``what`` is skipped loudly (a failure when ``RDMT_REQUIRE_SERVERS`` is set)."""
    import os

    import pytest

    path = chromium_path()
    if path is None:
        message = f"chromium is not installed (apt-get install chromium): SKIPPING {what}"
        if os.environ.get("RDMT_REQUIRE_SERVERS"):
            pytest.fail(message)
        pytest.skip(message)
    return path


class Browser:
    """One headless Chromium with one page; use as a context manager."""

    def __init__(self, width: int = 1600, height: int = 1000, executable: str | None = None):
        self.size = (width, height)
        self.executable = executable or chromium_path()
        self.proc = None
        self.profile = None
        self.loop = asyncio.new_event_loop()
        self.ws = None
        self.next_id = 0

    # -- life cycle -----------------------------------------------------------------
    def __enter__(self) -> "Browser":
        self.profile = tempfile.mkdtemp(prefix="rdmt-chromium-")
        self.proc = subprocess.Popen(
            [self.executable, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--remote-debugging-port=0", f"--user-data-dir={self.profile}",
             f"--window-size={self.size[0]},{self.size[1]}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port = self._port()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
            page = next(t for t in json.loads(r.read()) if t["type"] == "page")
        self.ws = self.loop.run_until_complete(
            websockets.connect(page["webSocketDebuggerUrl"], max_size=64 * 2**20))
        self.call("Page.enable")
        self.call("Emulation.setDeviceMetricsOverride", width=self.size[0], height=self.size[1],
                  deviceScaleFactor=1, mobile=False)
        return self

    def _port(self, timeout: float = 30) -> int:
        active = Path(self.profile) / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if active.exists() and active.read_text().strip():
                return int(active.read_text().split()[0])
            if self.proc.poll() is not None:
                raise RuntimeError("chromium exited before opening its DevTools port")
            time.sleep(0.1)
        raise RuntimeError("chromium did not open its DevTools port")

    def __exit__(self, *exc) -> None:
        if self.ws is not None:
            self.loop.run_until_complete(self.ws.close())
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.loop.close()
        shutil.rmtree(self.profile, ignore_errors=True)

    # -- protocol -------------------------------------------------------------------
    def call(self, method: str, timeout: float = 60, **params) -> dict:
        return self.loop.run_until_complete(asyncio.wait_for(self._call(method, params), timeout))

    async def _call(self, method: str, params: dict) -> dict:
        self.next_id += 1
        request = self.next_id
        await self.ws.send(json.dumps({"id": request, "method": method, "params": params}))
        while True:
            message = json.loads(await self.ws.recv())
            if message.get("id") == request:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression[:80]}: {result['exceptionDetails']}")
        return result.get("result", {}).get("value")

    # -- what a test does -----------------------------------------------------------
    def open(self, url: str) -> None:
        self.call("Page.navigate", url=url)

    def text(self) -> str:
        """The page's visible text (``document.body.innerText``)."""
        return self.evaluate("document.body ? document.body.innerText : ''") or ""

    def wait_for_text(self, *needles: str, timeout: float = 60) -> str:
        """Wait until every needle is in the page's text; return the text (fail naming what is missing)."""
        deadline = time.monotonic() + timeout
        text = ""
        while time.monotonic() < deadline:
            text = self.text()
            if all(n in text for n in needles):
                time.sleep(0.5)  # let the last requests settle before a screenshot
                return self.text()
            time.sleep(0.5)
        missing = [n for n in needles if n not in text]
        raise AssertionError(f"not on the page after {timeout:.0f} s: {missing}\n--- page text ---\n{text[-3000:]}")

    def click_text(self, label: str, last: bool = False) -> None:
        """Click the innermost visible element whose text is ``label`` (a tab, a button, a list entry).

        The first one in the page, or the ``last`` (a tab of an inner panel
        whose label an outer tab also has).
        """
        found = self.evaluate(f"""(() => {{
            const label = {json.dumps(label)};
            const all = [...document.querySelectorAll('body *')].filter(e =>
                e.offsetParent !== null && e.textContent.trim() === label);
            const inner = all.filter(e => ![...e.children].some(c => all.includes(c)));
            if (!inner.length) return false;
            inner[{'inner.length - 1' if last else '0'}].click();
            return true;
        }})()""")
        if not found:
            raise AssertionError(f"nothing to click labelled {label!r}\n--- page text ---\n{self.text()[-2000:]}")

    def scroll_to(self, text: str) -> None:
        """Scroll the innermost element showing ``text`` into view (a section of a side panel)."""
        self.evaluate(f"""(() => {{
            const all = [...document.querySelectorAll('body *')].filter(e =>
                e.offsetParent !== null && e.textContent.trim() === {json.dumps(text)});
            if (all.length) all[all.length - 1].scrollIntoView({{block: 'center'}});
        }})()""")
        time.sleep(0.5)

    def screenshot(self, path: Path) -> Path:
        data = self.call("Page.captureScreenshot", format="png")["data"]
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path
