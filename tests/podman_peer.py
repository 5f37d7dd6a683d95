"""A real Docker-compatible Engine API for the docker source's tests: podman's compat service
on a unix socket, with two running containers (peer-busy, peer-idle).

No registry is needed: the image is imported from a tar of Debian's busybox-static. Podman's
compat API is not moby (it swaps network rx/tx, names the interface "network", never fills
precpu_stats, has a thinner memory_stats); the recorded moby responses in
fixtures/docker/public serve the exact-number checks.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path

IMAGE = "localhost/pipeline-busybox"
BUSYBOX = Path("/bin/busybox")
#: sandboxes that cannot raise rlimits, and hybrid cgroup hosts (crun refuses those), need
#: runc and fixed ulimits; set through CONTAINERS_CONF so nothing under /etc is touched
CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
[engine]
runtime = "runc"
"""
#: a store of its own per run: two test runs at once (or a user's own containers) never see
#: each other's peer-busy and peer-idle
STORAGE_CONF = """\
[storage]
driver = "vfs"
graphroot = "{root}/storage"
runroot = "{root}/run"
"""


class Unavailable(Exception):
    """Podman cannot run here: the reason is the skip message."""


class PodmanPeer:
    def __init__(self, state: Path):
        self.state = state
        self.socket = state / "docker.sock"
        self.conf = state / "containers.conf"
        self.storage = state / "storage.conf"
        self.service: subprocess.Popen | None = None

    @property
    def env(self) -> dict[str, str]:
        return dict(os.environ, CONTAINERS_CONF=str(self.conf), CONTAINERS_STORAGE_CONF=str(self.storage))

    def podman(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout, env=self.env)

    def _must(self, *args: str) -> str:
        done = self.podman(*args)
        if done.returncode != 0:
            raise Unavailable(f"`podman {' '.join(args[:2])}` failed: {done.stderr.strip()[-300:]}")
        return done.stdout

    def start(self) -> str:
        """Start the service and the containers; return the endpoint (`unix://...`)."""
        missing = [tool for tool in ("podman", "runc") if shutil.which(tool) is None]
        if not BUSYBOX.is_file():
            missing.append(str(BUSYBOX))
        if missing:
            raise Unavailable(f"not installed: {', '.join(missing)} (Debian: apt-get install podman runc "
                              "busybox-static)")
        self.state.mkdir(parents=True, exist_ok=True)
        self.conf.write_text(CONTAINERS_CONF)
        self.storage.write_text(STORAGE_CONF.format(root=self.state))
        if self.podman("image", "exists", IMAGE).returncode != 0:
            self._import_image()
        log = open(self.state / "service.log", "wb")
        self.service = subprocess.Popen(["podman", "system", "service", "--time=0", f"unix://{self.socket}"],
                                        stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                        start_new_session=True)
        deadline = time.monotonic() + 30
        while not self.socket.exists():
            if self.service.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise Unavailable(f"podman system service did not start: "
                                  f"{(self.state / 'service.log').read_text(errors='replace')[-300:]}")
            time.sleep(0.1)
        self.podman("rm", "-f", "-t", "0", "peer-busy", "peer-idle")
        self._must("run", "-d", "--name", "peer-busy", "--network", "none", "--memory", "256m",
                   "--label", "app=busy", IMAGE,
                   "sh", "-c", "while :; do dd if=/dev/zero of=/tmp/f bs=1M count=8 2>/dev/null; done")
        self._must("run", "-d", "--name", "peer-idle", "--network", "none", "--label", "app=idle", IMAGE,
                   "sh", "-c", "while :; do sleep 1; done")
        return f"unix://{self.socket}"

    def _import_image(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            rootfs = Path(tmp) / "rootfs"
            for d in ("bin", "tmp", "proc", "sys", "dev"):
                (rootfs / d).mkdir(parents=True)
            shutil.copy(BUSYBOX, rootfs / "bin" / "busybox")
            for applet in ("sh", "sleep", "dd", "cat", "yes", "head", "wc", "seq"):
                (rootfs / "bin" / applet).symlink_to("busybox")
            archive = Path(tmp) / "rootfs.tar"
            with tarfile.open(archive, "w") as tar:
                tar.add(rootfs, arcname=".")
            self._must("import", "--quiet", str(archive), IMAGE)

    def stop(self) -> None:
        self.podman("rm", "-f", "-t", "0", "peer-busy", "peer-idle")
        if self.service is not None:
            self.service.terminate()
            try:
                self.service.wait(10)
            except subprocess.TimeoutExpired:
                self.service.kill()
            self.service = None
        self.socket.unlink(missing_ok=True)
