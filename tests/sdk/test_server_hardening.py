"""Regression tests for the server's own robustness: logging that cannot fail a request (F15) and an
owner-only data dir whatever existed before (F21)."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import time

import requests


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
