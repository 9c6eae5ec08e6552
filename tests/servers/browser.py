"""Headless Chromium, driven through its DevTools protocol: the HTML report's browser
test opens the report in it, and scripts/report_screenshot.py photographs the rendered
Markdown report with it. No driver beyond `websockets` (already a dependency)."""

from __future__ import annotations

import base64
import contextlib
import json
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

STARTUP_TIMEOUT_S = 30.0
CALL_TIMEOUT_S = 60.0


def chromium_binary() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


@contextlib.contextmanager
def chromium(binary: str, profile_dir: Path) -> Iterator[str]:
    """Start Chromium headless with a throwaway profile; yield its DevTools HTTP base URL."""
    process = subprocess.Popen(
        [
            binary,
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--remote-debugging-port=0",
            f"--user-data-dir={profile_dir}",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        port = None
        while port is None and time.monotonic() < deadline:
            line = process.stderr.readline()
            if "DevTools listening on ws://" in line:
                port = line.split("ws://", 1)[1].split("/", 1)[0].rsplit(":", 1)[1]
        if port is None:
            raise RuntimeError("Chromium did not start its DevTools endpoint")
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


class Page:
    """One tab: DevTools calls, one at a time."""

    def __init__(self, websocket: Any) -> None:
        self.websocket = websocket
        self.next_id = 0

    def call(self, method: str, **params: object) -> dict[str, Any]:
        self.next_id += 1
        self.websocket.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.websocket.recv(timeout=CALL_TIMEOUT_S))
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                result: dict[str, Any] = message["result"]
                return result

    def evaluate(self, expression: str) -> Any:
        return self.call("Runtime.evaluate", expression=expression)["result"].get("value")

    def wait_until_loaded(self) -> None:
        for _ in range(100):
            if self.evaluate("document.readyState") == "complete":
                return
            time.sleep(0.1)

    def screenshot(self, *, width: int | None = None) -> bytes:
        """The whole page as a PNG, beyond the window's height; at ``width`` CSS pixels
        (the page is laid out again at that width) when given."""
        if width is not None:
            self.call(
                "Emulation.setDeviceMetricsOverride",
                width=width,
                height=800,
                deviceScaleFactor=1,
                mobile=False,
            )
            self.call("Page.reload")
            time.sleep(0.2)
            self.wait_until_loaded()
        size = self.call("Page.getLayoutMetrics")["cssContentSize"]
        shot = self.call(
            "Page.captureScreenshot",
            format="png",
            captureBeyondViewport=True,
            clip={"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1},
        )
        return base64.b64decode(shot["data"])


@contextlib.contextmanager
def open_page(base_url: str, url: str) -> Iterator[Page]:
    """A new tab showing ``url``, loaded."""
    from websockets.sync.client import connect

    request = urllib.request.Request(f"{base_url}/json/new?{url}", method="PUT")
    with urllib.request.urlopen(request, timeout=STARTUP_TIMEOUT_S) as response:
        target = json.loads(response.read())
    with connect(target["webSocketDebuggerUrl"], max_size=None) as websocket:
        page = Page(websocket)
        page.call("Page.enable")
        page.wait_until_loaded()
        yield page
