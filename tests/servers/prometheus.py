"""A real Prometheus for the tests of the Prometheus checks.

Debian's ``prometheus`` binary (``apt-get install prometheus``; ``.ci/run`` installs it),
or the one ``$READYCHECK_PROMETHEUS`` names, started once per session on 127.0.0.1 with a
temporary config:

- one scrape job, ``app``, every second, of a small app exposing APP_METRICS through
  prometheus_client's own HTTP server;
- alerting rules evaluated every second (RULES): QueueBacklog firing (severity warning),
  PoolSaturated pending (severity page, its ``for`` is an hour), AppDown inactive
  (critical), and BrokenRule, which Prometheus loads but cannot evaluate;
- basic authentication (``basic_auth_users``, a bcrypt hash of a password made per
  session): every API request needs the user and password;
- a remote-read store that is down, asked only for selectors with ``source="remote"``:
  a query naming one is answered with Prometheus' ``warnings``.

The fixture waits for ``/-/ready``, the first scrape and the first firing alert, so a test
starts with data. Where no binary is found, tests using it are skipped with the reason.

    fixture             scope     what it is
    prometheus_server   session   PrometheusServer
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from readycheck.demo.processes import (
    ServerProcess,
    ServerStartError,
    private_temp_dir,
    start_on_free_port,
)
from tests.servers.process import free_tcp_port

HOST = "127.0.0.1"
USER = "readycheck"
EXECUTABLE_VARIABLE = "READYCHECK_PROMETHEUS"
START_TIMEOUT_S = 30.0

# What the app exposes: (name, labels, value), gauges all.
APP_METRICS: list[tuple[str, dict[str, str], float]] = [
    ("app_pool_usage_ratio", {"pool": "primary"}, 0.42),
    ("app_pool_usage_ratio", {"pool": "replica"}, 0.91),
    ("app_queue_depth", {}, 250),
    ("app_error_ratio", {}, 0.002),
]

RULES = """\
groups:
  - name: app
    rules:
      - alert: QueueBacklog
        expr: app_queue_depth > 100
        labels: {severity: warning, service: app}
        annotations: {summary: "queue holds {{ $value }} jobs"}
      - alert: PoolSaturated
        expr: app_pool_usage_ratio > 0.8
        for: 1h
        labels: {severity: page, service: app}
      - alert: AppDown
        expr: up{job="app"} == 0
        for: 1m
        labels: {severity: critical, service: app}
      - alert: BrokenRule
        expr: label_replace(app_pool_usage_ratio, "pool", "same", "", "")
        labels: {severity: info, service: app}
"""
# What Prometheus answers for BrokenRule's evaluation.
BROKEN_RULE_ERROR = "vector cannot contain metrics with the same labelset"
# A query of which one selector is sent to the remote store that is down.
WARNING_QUERY = 'app_queue_depth or app_queue_depth{source="remote"}'


def find_prometheus() -> str | None:
    override = os.environ.get(EXECUTABLE_VARIABLE)
    if override:
        return override if Path(override).is_file() else None
    return shutil.which("prometheus")


@dataclass
class PrometheusServer:
    """A running Prometheus: its address, credentials, and when it first had data."""

    url: str
    password: str
    process: ServerProcess
    root: Path
    app_server: Any
    first_scrape: float
    """``time.time()`` of the first scrape that found the app up."""
    user: str = USER

    def get(self, path: str, **params: str) -> Any:
        """An API answer's ``data``, asked with the credentials."""
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        return _get(f"{self.url}{path}{query}", self.password)["data"]

    def wait_for_history(self, seconds: float) -> None:
        """Sleep until the app has been scraped for at least ``seconds``."""
        time.sleep(max(0.0, self.first_scrape + seconds - time.time()))

    def stop(self) -> None:
        self.process.stop()
        self.app_server.shutdown()
        shutil.rmtree(self.root, ignore_errors=True)


def _get(url: str, password: str, timeout: float = 2.0) -> Any:
    request = urllib.request.Request(url)
    token = base64.b64encode(f"{USER}:{password}".encode()).decode()
    request.add_header("Authorization", f"Basic {token}")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def _ready(port: int, password: str) -> bool:
    request = urllib.request.Request(f"http://{HOST}:{port}/-/ready")
    token = base64.b64encode(f"{USER}:{password}".encode()).decode()
    request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=1) as response:
            return bool(response.status == 200)
    except (OSError, urllib.error.URLError):
        return False


def _start_app() -> Any:
    from prometheus_client import CollectorRegistry, Gauge, start_http_server

    registry = CollectorRegistry()
    gauges: dict[str, Gauge] = {}
    for name, labels, value in APP_METRICS:
        if name not in gauges:
            gauges[name] = Gauge(name, f"{name} of the test app", list(labels), registry=registry)
        (gauges[name].labels(**labels) if labels else gauges[name]).set(value)
    server, _thread = start_http_server(0, addr=HOST, registry=registry)
    return server


def _write_config(root: Path, app_port: int, password: str) -> Path:
    import bcrypt

    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
    (root / "web.yml").write_text(f"basic_auth_users:\n  {USER}: '{hashed}'\n")
    (root / "rules.yml").write_text(RULES)
    config = root / "prometheus.yml"
    config.write_text(
        f"""\
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files: [{root / "rules.yml"}]
scrape_configs:
  - job_name: app
    static_configs: [{{targets: ["{HOST}:{app_port}"]}}]
remote_read:
  - url: http://{HOST}:{free_tcp_port(HOST)}/api/v1/read
    read_recent: true
    remote_timeout: 1s
    required_matchers: {{source: remote}}
"""
    )
    return config


def start_prometheus(binary: str) -> PrometheusServer:
    root = private_temp_dir("test-prometheus", None)
    password = secrets.token_urlsafe(18)
    app = _start_app()
    try:
        config = _write_config(root, app.server_port, password)

        def launch(port: int) -> ServerProcess:
            return ServerProcess.start(
                [
                    binary,
                    f"--config.file={config}",
                    f"--web.config.file={root / 'web.yml'}",
                    f"--storage.tsdb.path={root / 'data'}",
                    f"--web.listen-address={HOST}:{port}",
                    "--log.level=warn",
                ],
                name="prometheus",
                log_path=root / "prometheus.log",
                account=None,
                env=dict(os.environ),
            )

        port, process = start_on_free_port(
            launch, lambda port: _ready(port, password), host=HOST, timeout=START_TIMEOUT_S
        )
    except BaseException:
        app.shutdown()
        shutil.rmtree(root, ignore_errors=True)
        raise
    url = f"http://{HOST}:{port}"
    server = PrometheusServer(url, password, process, root, app, first_scrape=0.0)
    try:
        server.first_scrape = _wait_for_data(server)
    except BaseException:
        server.stop()
        raise
    return server


def _wait_for_data(server: PrometheusServer) -> float:
    """Wait for the first scrape and the first firing alert; a time after that scrape."""
    deadline = time.monotonic() + START_TIMEOUT_S
    scraped: float | None = None
    while time.monotonic() < deadline:
        if scraped is None and server.get("/api/v1/query", query='up{job="app"} == 1')["result"]:
            scraped = time.time()
        alerts = server.get("/api/v1/alerts")["alerts"]
        if scraped and any(a["labels"]["alertname"] == "QueueBacklog" for a in alerts):
            return scraped
        time.sleep(0.2)
    raise ServerStartError(
        f"prometheus had no data from the app within {START_TIMEOUT_S:g}s\n"
        f"{server.process.log_tail()}"
    )


@pytest.fixture(scope="session")
def prometheus_server() -> Iterator[PrometheusServer]:
    binary = find_prometheus()
    if binary is None:
        pytest.skip(
            "prometheus is not installed: apt-get install prometheus (Debian's package), "
            f"or set {EXECUTABLE_VARIABLE} to its path"
        )
    server = start_prometheus(binary)
    yield server
    server.stop()
