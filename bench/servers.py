"""Start, probe and stop the processes a benchmark needs (each in its own session/process group)."""

# ruff: noqa: SIM115  (the log file is handed to the child process)

from __future__ import annotations

import os
import signal
import subprocess
import time

import httpx

from bench.common import NFOD, PYTHON, ROOT


class Server:
    """One uvicorn worker serving either the real API or the baseline, in its own process."""

    def __init__(
        self, name: str, kind: str, url: str, port: int, log_dir: str, extra_env: dict | None = None
    ):
        self.name = name
        self.kind = kind
        self.url = url
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self.log_path = os.path.join(log_dir, f"{name}.log")
        self.extra_env = extra_env or {}
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def command(self) -> list[str]:
        if self.kind == "api":
            return [
                NFOD,
                "serve",
                "--no-scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
            ]
        if self.kind == "api+scheduler":
            return [NFOD, "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        return [
            PYTHON,
            "-m",
            "uvicorn",
            "--factory",
            "bench.baseline_app:create_app",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            "1",
            "--no-access-log",
            "--log-level",
            "warning",
        ]

    def env(self) -> dict:
        env = dict(os.environ)
        env.update(
            {
                "NFOD_DATABASE_URL": self.url,
                "NFOD_ENV": "development",
                "NFOD_LOG_LEVEL": "WARNING",
                "PYTHONPATH": ROOT,
            }
        )
        env.update(self.extra_env)
        return env

    def start(self, timeout: float = 60) -> None:
        log = open(self.log_path, "a")
        self.proc = subprocess.Popen(
            self.command(),
            cwd=ROOT,
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.starts += 1
        deadline = time.time() + timeout
        probe = "/healthz" if self.kind.startswith("api") else "/openapi.json"
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start; see {self.log_path}")
            try:
                if httpx.get(self.base + probe, timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} did not start in {timeout}s; see {self.log_path}")

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def peak_rss_mb(self) -> float | None:
        """VmHWM: the process's peak resident set size so far."""
        if not self.proc:
            return None
        try:
            with open(f"/proc/{self.proc.pid}/status") as fh:
                for line in fh:
                    if line.startswith("VmHWM:"):
                        return round(int(line.split()[1]) / 1024, 1)
        except OSError:
            return None
        return None

    def cpu_seconds(self) -> float:
        """User + system CPU time of the process so far (/proc/<pid>/stat)."""
        with open(f"/proc/{self.proc.pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_mb(self) -> float | None:
        if not self.proc:
            return None
        try:
            with open(f"/proc/{self.proc.pid}/status") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        return round(int(line.split()[1]) / 1024, 1)
        except OSError:
            return None
        return None

    def kill9(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def token(base: str, username: str, password: str) -> str:
    resp = httpx.post(
        base + "/v1/auth/token", data={"username": username, "password": password}, timeout=30
    )
    resp.raise_for_status()
    return resp.json()["access_token"]
