"""A real Prometheus for the tests of the Prometheus checks.

readycheck.demo.prometheus.PrometheusServer (Debian's ``prometheus`` binary, which
``.ci/run`` installs, or the one ``$READYCHECK_PROMETHEUS`` names), started once per
session on 127.0.0.1 with a temporary config:

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
    prometheus_server   session   RunningPrometheus (url, password, wait_for_history)
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from readycheck.demo.prometheus import EXECUTABLE_VARIABLE, PrometheusServer, find_prometheus
from tests.servers.process import free_tcp_port

HOST = "127.0.0.1"
USER = "readycheck"

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


@dataclass
class RunningPrometheus:
    """The session's Prometheus, its password, and when it first had the app's data."""

    server: PrometheusServer
    password: str
    app_server: Any
    first_scrape: float
    """`time.time()` once the first scrape had found the app up."""
    user: str = USER

    @property
    def url(self) -> str:
        return self.server.url

    def wait_for_history(self, seconds: float) -> None:
        """Sleep until the app has been scraped for at least `seconds`."""
        time.sleep(max(0.0, self.first_scrape + seconds - time.time()))

    def stop(self) -> None:
        self.server.stop()
        self.app_server.shutdown()


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


def _config(app_port: int) -> Any:
    def write(root: Path) -> Path:
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

    return write


def start_test_prometheus() -> RunningPrometheus:
    import bcrypt

    password = secrets.token_urlsafe(18)
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
    app = _start_app()
    try:
        server = PrometheusServer.start(
            label="test",
            write_config=_config(app.server_port),
            web_config=f"basic_auth_users:\n  {USER}: '{hashed}'\n",
            basic_auth=(USER, password),
        )
    except BaseException:
        app.shutdown()
        raise
    started = RunningPrometheus(server, password, app, first_scrape=0.0)
    try:
        server.wait_until(
            lambda: bool(server.get("/api/v1/query", query='up{job="app"} == 1')["result"]),
            "the first scrape of the app",
        )
        started.first_scrape = time.time()
        server.wait_until(
            lambda: any(
                alert["labels"]["alertname"] == "QueueBacklog"
                for alert in server.get("/api/v1/alerts")["alerts"]
            ),
            "QueueBacklog firing",
        )
    except BaseException:
        started.stop()
        raise
    return started


@pytest.fixture(scope="session")
def prometheus_server() -> Iterator[RunningPrometheus]:
    if find_prometheus() is None:
        pytest.skip(
            "prometheus is not installed: apt-get install prometheus (Debian's package), "
            f"or set {EXECUTABLE_VARIABLE} to its path"
        )
    server = start_test_prometheus()
    yield server
    server.stop()
