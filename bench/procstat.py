"""CPU time and memory of a process tree, read from /proc (Linux only)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

_PROC = Path("/proc")
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class CpuSample:
    """CPU seconds (user + system) used by a process tree up to one moment."""

    seconds: float
    """Live processes' own time plus the time of children they have already reaped."""
    processes: int
    """How many live processes the tree had."""


def _read_stat(pid: int) -> list[str] | None:
    try:
        raw = (_PROC / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name sits in parentheses and may itself hold spaces or parentheses.
    after_name = raw[raw.rindex(")") + 2 :]
    return after_name.split()


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        fields = _read_stat(int(entry.name))
        if fields is None:
            continue
        # fields[0] is the state, fields[1] the parent pid.
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    return children


def process_tree(pid: int) -> list[int]:
    """The pid and all its live descendants."""
    children = _children_map()
    tree: list[int] = []
    pending = [pid]
    while pending:
        current = pending.pop()
        if (_PROC / str(current)).exists():
            tree.append(current)
        pending.extend(children.get(current, []))
    return tree


def cpu_seconds(pid: int) -> CpuSample:
    """User + system CPU seconds of the tree rooted at pid, reaped children included."""
    ticks = 0
    live = 0
    for member in process_tree(pid):
        fields = _read_stat(member)
        if fields is None:
            continue
        live += 1
        # After the name: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14).
        ticks += int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])
    return CpuSample(seconds=ticks / _CLOCK_TICKS, processes=live)


def _status_kib(pid: int, key: str) -> int:
    try:
        text = (_PROC / str(pid) / "status").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return 0
    for line in text.splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def peak_rss_mib(pid: int) -> float:
    """Sum over the tree of each process's VmHWM (its own high-water mark), in MiB."""
    return sum(_status_kib(member, "VmHWM") for member in process_tree(pid)) / 1024


def rss_mib(pid: int) -> float:
    """Sum over the tree of each process's current VmRSS, in MiB."""
    return sum(_status_kib(member, "VmRSS") for member in process_tree(pid)) / 1024


def machine_busy_seconds() -> float:
    """CPU seconds all CPUs have spent busy since boot (user, nice, system, irq, steal)."""
    fields = (_PROC / "stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + irq + softirq + steal) / _CLOCK_TICKS
