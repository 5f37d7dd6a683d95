"""Fixtures every test gets."""

from __future__ import annotations

import os
import subprocess

import pytest


@pytest.fixture(autouse=True)
def _own_state_home(tmp_path_factory, monkeypatch):
    # state_dir defaults to $XDG_STATE_HOME/pipeline: without this, pipelines run by tests
    # would keep rate state in the user's home, and one test's state would give the next rates
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("state-home")))


@pytest.fixture(scope="session")
def certs(tmp_path_factory):
    """A self-signed certificate for localhost and 127.0.0.1 (cert.pem, key.pem), its own CA."""
    d = tmp_path_factory.mktemp("certs")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem")], check=True, capture_output=True)
    return d


@pytest.fixture(autouse=True)
def _no_process_left():
    from helpers import STARTED

    yield
    for proc in STARTED:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    STARTED.clear()


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MiB tmpfs of the test's own, to fill up (`helpers.fill`); root only."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs to fill needs root")
    where = tmp_path / "disk"
    where.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(where)],
                             capture_output=True, text=True)
    if mounted.returncode:
        pytest.skip(f"mount -t tmpfs refused: {mounted.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


@pytest.fixture(scope="module")
def podman(tmp_path_factory):
    """podman's Docker-compatible API with two running containers (podman_peer), one per module."""
    from podman_peer import PodmanPeer, Unavailable

    peer = PodmanPeer(tmp_path_factory.mktemp("podman"))
    try:
        peer.start()
    except Unavailable as e:
        pytest.skip(f"podman's Docker API cannot run here: {e}")
    yield peer
    peer.stop()


@pytest.fixture(scope="session")
def kafka(tmp_path_factory):
    """One real Apache Kafka 4 broker (KRaft, kafka_peer) for the whole session; tests make
    topics of their own on it. A test that kills it starts it again before it ends."""
    import shutil

    from kafka_peer import KafkaBroker, Unavailable

    if shutil.which("kcat") is None:
        pytest.skip("no `kcat`, the independent Kafka client of the tests (Debian: apt-get install kcat)")
    broker = KafkaBroker(tmp_path_factory.mktemp("kafka"))
    try:
        broker.start()
    except Unavailable as e:
        pytest.skip(f"no Kafka broker: {e}")
    yield broker
    broker.stop()
