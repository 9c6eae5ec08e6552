"""A throwaway Prometheus: loopback, a config of the caller's, gone when it is stopped.

Prometheus ships no wheel: the binary is ``$READYCHECK_PROMETHEUS``, else ``prometheus``
on PATH (Debian's package: ``apt-get install prometheus``). Where there is none,
``find_prometheus()`` answers None and the demo leaves its Prometheus checks out, saying
so. The test suite's Prometheus (tests/servers/prometheus.py) is started here too.

``PrometheusServer.start(label, config)`` runs it on 127.0.0.1 on a free port, with its
data in a temp dir of its own (``readycheck-<label>-prometheus-<pid>-*``) removed by
``stop()`` or at interpreter exit, and waits until ``/-/ready`` answers.
"""

from __future__ import annotations

import atexit
import base64
import json
import os
import shutil
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self

from readycheck.demo.processes import (
    ServerProcess,
    ServerStartError,
    private_temp_dir,
    start_on_free_port,
)

HOST = "127.0.0.1"
EXECUTABLE_VARIABLE = "READYCHECK_PROMETHEUS"


def find_prometheus() -> Path | None:
    """The prometheus executable, or None; see the module docstring for the order."""
    override = os.environ.get(EXECUTABLE_VARIABLE)
    if override:
        if not Path(override).is_file():
            raise ServerStartError(f"{EXECUTABLE_VARIABLE}={override} is not a file")
        return Path(override)
    on_path = shutil.which("prometheus")
    return Path(on_path) if on_path else None


class PrometheusServer:
    """A running throwaway Prometheus: its URL, the credentials it asks for, its process."""

    def __init__(
        self, *, root: Path, process: ServerProcess, port: int, basic_auth: tuple[str, str] | None
    ) -> None:
        self.root = root
        self.process = process
        self.url = f"http://{HOST}:{port}"
        self.basic_auth = basic_auth

    @classmethod
    def start(
        cls,
        *,
        label: str,
        write_config: Callable[[Path], Path],
        web_config: str | None = None,
        basic_auth: tuple[str, str] | None = None,
        timeout: float = 30.0,
    ) -> Self:
        """Start a server; ``write_config(root)`` writes its config in the temp dir and
        returns the file; ``web_config`` is its --web.config.file text (basic_auth_users,
        whose ``basic_auth`` user and password the readiness probe then sends)."""
        executable = find_prometheus()
        if executable is None:
            raise ServerStartError(
                "no prometheus found: apt-get install prometheus (Debian's package), or set "
                f"{EXECUTABLE_VARIABLE} to its path"
            )
        root = private_temp_dir(f"{label}-prometheus", None)
        try:
            config = write_config(root)
            options = []
            if web_config is not None:
                (root / "web.yml").write_text(web_config)
                options.append(f"--web.config.file={root / 'web.yml'}")

            def launch(port: int) -> ServerProcess:
                return ServerProcess.start(
                    [
                        executable,
                        f"--config.file={config}",
                        f"--storage.tsdb.path={root / 'data'}",
                        f"--web.listen-address={HOST}:{port}",
                        "--log.level=warn",
                        *options,
                    ],
                    name=f"prometheus ({executable})",
                    log_path=root / "prometheus.log",
                    account=None,
                    env=os.environ,
                )

            port, process = start_on_free_port(
                launch,
                lambda port: _ready(f"http://{HOST}:{port}", basic_auth),
                host=HOST,
                timeout=timeout,
            )
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise
        server = cls(root=root, process=process, port=port, basic_auth=basic_auth)
        atexit.register(server.stop)
        return server

    def get(self, path: str, **params: str) -> Any:
        """An API answer's ``data``."""
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with _open(f"{self.url}{path}{query}", self.basic_auth) as response:
            return json.loads(response.read())["data"]

    def wait_until(self, ready: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
        """Poll ``ready`` (a query of our own) until it is True; raise with the log tail."""
        deadline = time.monotonic() + timeout
        while not ready():
            if time.monotonic() > deadline:
                raise ServerStartError(
                    f"prometheus: {what} not within {timeout:g}s\n{self.process.log_tail()}"
                )
            time.sleep(0.2)

    def stop(self) -> None:
        """Stop the server and delete its temp dir; safe to call more than once."""
        self.process.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def __repr__(self) -> str:
        return f"PrometheusServer({self.url})"


def _open(url: str, basic_auth: tuple[str, str] | None) -> Any:
    request = urllib.request.Request(url)
    if basic_auth is not None:
        token = base64.b64encode(":".join(basic_auth).encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    return urllib.request.urlopen(request, timeout=2)


def _ready(url: str, basic_auth: tuple[str, str] | None) -> bool:
    try:
        with _open(f"{url}/-/ready", basic_auth) as response:
            return bool(response.status == 200)
    except OSError:
        return False
