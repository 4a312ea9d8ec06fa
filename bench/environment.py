"""What machine and which software versions a run was measured on."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sqlite3
import subprocess
from pathlib import Path


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def memory() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 / 1024:.0f} GiB RAM"
    except OSError:
        pass
    return "? RAM"


def nproc() -> int:
    return len(os.sched_getaffinity(0))


def machine(cpus: int, placement: str) -> dict[str, str]:
    return {
        "nproc": str(cpus),
        "cpu_model": cpu_model(),
        "memory": memory(),
        "kernel": platform.release(),
        "placement": placement,
    }


def package_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def git_revision(repo: Path) -> str:
    try:
        completed = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except OSError:
        return "?"
    if completed.returncode != 0:
        return "no commit"
    dirty = subprocess.run(
        ["git", "-C", str(repo), "status", "--porcelain"],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    return completed.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def base_versions(repo: Path) -> dict[str, str]:
    return {
        "stillroom": f"{package_version('stillroom')} (git {git_revision(repo)})",
        "Python": platform.python_version(),
        "SQLite": sqlite3.sqlite_version,
        "uvloop": package_version("uvloop"),
        "aiohttp": package_version("aiohttp"),
    }


def own_cpu_seconds() -> float:
    """CPU seconds of this process and of every child it has reaped."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"
