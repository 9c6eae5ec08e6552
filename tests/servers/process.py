"""Server processes for the tests: the machinery is readycheck.demo.processes (private
temp dirs, free ports, start, wait, stop), which ``readycheck demo`` uses to start the same
servers. Re-exported here for the tests that import it from tests.servers.process."""

from __future__ import annotations

from readycheck.demo.processes import free_tcp_port

__all__ = ["free_tcp_port"]
