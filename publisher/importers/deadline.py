"""An httpx transport whose every socket operation (connect, TLS, each read and write) ends by
one deadline, so a server that dribbles its headers (one line every 20 s) or redirects slowly
cannot hold a download past its total time limit: httpx's own timeouts are per operation."""

from __future__ import annotations

import ssl
import time
import typing

import httpcore
import httpx


class DeadlinePassed(httpcore.TimeoutException):
    """The download's total time limit passed."""


_SLACK = 0.05  # seconds: a socket timeout this close to the deadline is the deadline


def _remaining(deadline: float, timeout: float | None) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise DeadlinePassed("the total time limit passed")
    return left if timeout is None else min(timeout, left)


class _Stream(httpcore.NetworkStream):
    def __init__(self, stream: httpcore.NetworkStream, deadline: float) -> None:
        self.stream, self.deadline = stream, deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        try:
            return self.stream.read(max_bytes, _remaining(self.deadline, timeout))
        except httpcore.ReadTimeout:
            _remaining(self.deadline - _SLACK, None)  # the socket timed out at the deadline: say so
            raise

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self.stream.write(buffer, _remaining(self.deadline, timeout))

    def close(self) -> None:
        self.stream.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        tls = self.stream.start_tls(ssl_context, server_hostname, _remaining(self.deadline, timeout))
        return _Stream(tls, self.deadline)

    def get_extra_info(self, info: str) -> typing.Any:
        return self.stream.get_extra_info(info)


class _Backend(httpcore.NetworkBackend):
    def __init__(self, backend: httpcore.NetworkBackend, deadline: float) -> None:
        self.backend, self.deadline = backend, deadline

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        stream = self.backend.connect_tcp(host, port, _remaining(self.deadline, timeout), local_address, socket_options)
        return _Stream(stream, self.deadline)

    def sleep(self, seconds: float) -> None:
        self.backend.sleep(min(seconds, _remaining(self.deadline, None)))


def transport(seconds: float) -> httpx.HTTPTransport:
    """A transport for one download that must be over `seconds` from now, redirects included."""
    made = httpx.HTTPTransport()
    pool = made._pool  # httpx keeps its httpcore pool here
    pool._network_backend = _Backend(pool._network_backend, time.monotonic() + seconds)
    return made
