"""HTTP, TLS and WebSocket readiness: the service's own surface.

The checks a readiness checklist asks of a running service: its health endpoints answer
(`http.endpoint`, with `retry_for` the "wait until the new deploy is ready" gate), its
responses carry the security headers and keep CORS closed (`http.security_headers`), it
keeps request ids (`http.request_id`), its errors follow the agreed JSON contract
(`http.error_contract`), it exposes Prometheus metrics (`http.metrics`), it throttles a
burst and recovers (`http.rate_limit`, which sends load), its certificate is trusted and
not expiring (`tls.certificate`), and its WebSocket routes upgrade
(`websocket.handshake`).

Every probe is bounded: connect and read timeouts, a total deadline (a server that
trickles its body a byte at a time cannot hold a check), and `max_body` (a bigger
response is cut off there and FAILs, never read whole into memory). TLS is verified by
default, against the system's trust store or `ca_file`. The checks of a run share one
HTTP/1.1 keep-alive client per TLS configuration. Header values named in
`secret_headers`, and those of headers named like secrets (Authorization, Cookie,
X-Api-Key), appear in no output; a failure reads "connection refused by host:port" or
"TLS: certificate has expired", never a library's message carrying the URL.

Parameter models import no driver: httpx, prometheus_client, websockets, ssl and
cryptography are imported when a check runs, so `readycheck validate` stays fast.
"""
