"""Regression tests for the server's own robustness: logging that cannot fail a request (F15), an
owner-only data dir whatever existed before (F21), and connection timeouts and a connection cap (F6)."""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import stat
import subprocess
import time
from urllib.parse import urlsplit

import pytest
import requests

import byos_support as bs


def _start(byos_bin, data_dir, stderr):
    return subprocess.Popen(
        [str(byos_bin), "serve", "--data-dir", str(data_dir), "--port", "0"],
        stdout=subprocess.DEVNULL,
        stderr=stderr,
    )


def _wait_ready(proc, data_dir, timeout=60.0):
    boot = data_dir / "bootstrap.json"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"byos exited early with {proc.returncode}"
        if boot.exists():
            try:
                return json.loads(boot.read_text())
            except ValueError:
                pass
        time.sleep(0.1)
    raise AssertionError("byos did not become ready")


def _stop(proc):
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=60)


def test_regression_f15_unwritable_log_does_not_panic(byos_bin, tmp_path):
    data_dir = tmp_path / "data"
    with open("/dev/full", "w") as full:
        proc = _start(byos_bin, data_dir, full)
        try:
            boot = _wait_ready(proc, data_dir)
            # Requests log; with the log's disk full they must still be answered.
            for _ in range(5):
                answer = requests.get(
                    f"{boot['authority']}/{boot['tenant_id']}/v2.0/.well-known/openid-configuration", verify=boot["ca_file"], timeout=10
                )
                assert answer.status_code == 200
            assert proc.poll() is None, "byos died while its log could not be written"
        finally:
            rc = _stop(proc)
    assert rc == 0


def test_regression_f21_existing_data_dir_is_made_owner_only(byos_bin, tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o755)
    os.chmod(data_dir, 0o755)
    proc = _start(byos_bin, data_dir, subprocess.DEVNULL)
    try:
        _wait_ready(proc, data_dir)
    finally:
        assert _stop(proc) == 0
    # A second start finds the store and objects made by the first: still owner-only.
    os.chmod(data_dir, 0o755)
    os.chmod(data_dir / "meta.redb", 0o644)
    proc = _start(byos_bin, data_dir, subprocess.DEVNULL)
    try:
        _wait_ready(proc, data_dir)
        assert stat.S_IMODE(os.stat(data_dir).st_mode) == 0o700
        for entry in data_dir.iterdir():
            if entry.is_symlink() or entry.is_socket():
                continue
            mode = stat.S_IMODE(entry.stat().st_mode)
            assert mode & 0o077 == 0, f"{entry.name} is {oct(mode)}"
    finally:
        assert _stop(proc) == 0


# --------------------------------------------------------------------------------------------------
# F6: connections that send nothing, trickle a header, or stall mid-request are closed, and a cap on
# open connections keeps the listeners serving while idle clients are reaped.

F6_ENV = {"BYOS_HEADER_READ_TIMEOUT_SECONDS": "2", "BYOS_IDLE_TIMEOUT_SECONDS": "3", "BYOS_MAX_CONNECTIONS": "4"}
# How long a test waits for the server to close a connection: well above the limits set above, so a
# slow machine does not make the tests flaky, and far below "never".
CLOSE_WITHIN_S = 20


@pytest.fixture
def limited_server(byos_bin, tmp_path):
    server = bs.ByosServer(byos_bin, tmp_path / "data", env=F6_ENV)
    boot = server.start()
    try:
        yield server, boot
    finally:
        server.stop()


def _tls_connection(boot):
    """A TLS connection to the main listener that sends nothing yet."""
    address = urlsplit(boot["authority"])
    context = ssl.create_default_context(cafile=boot["ca_file"])
    context.set_alpn_protocols(["http/1.1"])
    raw = socket.create_connection((address.hostname, address.port), timeout=CLOSE_WITHIN_S)
    return context.wrap_socket(raw, server_hostname=address.hostname)


def _closed_by_server(connection, trickle: bytes = b"") -> bool:
    """Whether the server closes `connection` within CLOSE_WITHIN_S, while `trickle` is sent a byte
    every half second (a client that never completes what it started)."""
    deadline = time.monotonic() + CLOSE_WITHIN_S
    connection.settimeout(0.5)
    sent = 0
    while time.monotonic() < deadline:
        try:
            if sent < len(trickle):
                connection.sendall(trickle[sent : sent + 1])
                sent += 1
            if connection.recv(4096) == b"":
                return True
        except socket.timeout:
            continue
        except (ConnectionError, ssl.SSLError, OSError):
            return True
    return False


def test_regression_f6_silent_connection_is_closed(limited_server):
    _, boot = limited_server
    with _tls_connection(boot) as connection:
        assert _closed_by_server(connection), "a connection that never sends a request must be closed"


def test_regression_f6_trickled_header_is_closed(limited_server):
    _, boot = limited_server
    header = b"GET /metadata/endpoints HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: " + b"a" * 200
    with _tls_connection(boot) as connection:
        assert _closed_by_server(connection, trickle=header), "a header that never completes must be closed"


def test_regression_f6_stalled_body_is_closed(limited_server):
    _, boot = limited_server
    with _tls_connection(boot) as connection:
        connection.sendall(b"PUT /x HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n" + b"0" * 10)
        assert _closed_by_server(connection), "a request whose body stops coming must be closed"


def test_regression_f6_connection_cap_keeps_serving(limited_server):
    server, boot = limited_server
    openid = f"{boot['authority']}/{boot['tenant_id']}/v2.0/.well-known/openid-configuration"
    hogs = [_tls_connection(boot) for _ in range(4)]
    try:
        # Every slot is held by a silent client; the request waits for a slot, which the header
        # timeout frees, instead of failing or starving.
        answer = requests.get(openid, verify=boot["ca_file"], timeout=CLOSE_WITHIN_S)
        assert answer.status_code == 200
        assert all(_closed_by_server(hog) for hog in hogs), "the silent clients are reaped"
    finally:
        for hog in hogs:
            hog.close()
    assert "connection limit reached" in server.log_path.read_text(errors="replace")
    for _ in range(8):  # more requests than slots: each connection frees its slot when it ends
        assert requests.get(openid, verify=boot["ca_file"], timeout=CLOSE_WITHIN_S).status_code == 200


def test_client_request_id_is_echoed(limited_server):
    _, boot = limited_server
    openid = f"{boot['authority']}/{boot['tenant_id']}/v2.0/.well-known/openid-configuration"
    answer = requests.get(openid, verify=boot["ca_file"], timeout=10, headers={"x-ms-client-request-id": "abc-123"})
    assert answer.headers.get("x-ms-client-request-id") == "abc-123"
    too_long = "a" * 1025
    answer = requests.get(openid, verify=boot["ca_file"], timeout=10, headers={"x-ms-client-request-id": too_long})
    assert "x-ms-client-request-id" not in answer.headers
