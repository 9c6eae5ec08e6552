"""Prometheus: the thresholds and alerting rules a team already keeps in its monitoring.

A deploy checklist's monitoring lines ("error rate under 1%", "p99 under 500 ms", "pool
under 80% of capacity", "the alerts are in place and none is firing") are read from the
Prometheus HTTP API, never from the service itself: `prometheus.query` compares every
series an instant PromQL query returns with a threshold (or, with `for`, every point of
a range query over the last N), and `prometheus.alerts` asks that the alerting rules a
profile requires are loaded and healthy, and that none of the given severities is firing.

Requests go through the HTTP family's client: connect and read timeouts, a
response cap (`max_body`), TLS verified by default (`ca_file` for a private CA), and the
query's own `timeout` passed to Prometheus, so a heavy query stops on the server too. A
token or a password is read from a secret source (environment, .env file, mounted file)
when the check runs, and appears in no output. When Prometheus cannot answer
(unreachable, a 5xx, a query it rejects) the check is ERROR with Prometheus' own message
(a PromQL syntax error shows where it is): a threshold that could not be read is never a
PASS. An answer carrying `warnings` (a remote store that failed, a partial result) WARNs
with them, even when every series is within its threshold.

Parameter models import no driver: httpx is imported when a check runs.
"""
