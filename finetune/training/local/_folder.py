"""A local job's folder: what the worker writes and the backend reads.

    <root>/<job id>/
        spec.json          what to train, settings and hyperparameters as resolved at start
        train.jsonl        the export, as uploaded
        validation.jsonl   (when given) an eval loss per epoch
        status.json        state, error, model name, trained tokens (written atomically)
        events.jsonl       one event a line (messages and metrics), appended
        metrics.jsonl      step, epoch, loss, learning_rate, eval_loss, tokens_per_second
        pid                "<pid> <start time>" of the worker, its process group leader
        ray-job            with runner "ray": the Ray submission id of the current attempt,
                           and how that Ray job ended once it did
        cancel             present once a cancel began
        resume-<n>         taken (exclusively) by the one backend that restarts a dead worker
        worker.log         the worker's stdout and stderr (with Ray: the job's logs, copied)
        checkpoints/       checkpoint-<step>/ as the trainer saves them (with an artifact_uri:
                           their trainer_state.json only, the weights staying in the store)
        adapter/           the LoRA adapter (adapter_model.safetensors, adapter_config.json)
        model/             the whole model, when tuning is "full"
        merged/            the base with the adapter merged in, when configured

Nothing here imports the training libraries.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def _read_json(path: Path) -> Any:
    try:
        return orjson.loads(path.read_bytes())
    except (FileNotFoundError, orjson.JSONDecodeError):
        return None


def _read_lines(path: Path) -> list[dict[str, Any]]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return []
    found = []
    for line in raw.splitlines():
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue  # a line being written as we read
        if isinstance(value, dict):
            found.append(value)
    return found


def process_start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (Linux), telling a live worker from a reused pid; None
    when there is no such process or it is a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    except OSError:
        return ""
    fields = stat[stat.rfind(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return None
    return fields[19]


def process_alive(pid: int, start_time: str | None) -> bool:
    if Path("/proc").is_dir():
        found = process_start_time(pid)
        return found is not None and (not start_time or not found or found == start_time)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True, slots=True)
class JobFolder:
    path: Path

    @property
    def job_id(self) -> str:
        return self.path.name

    @property
    def spec_file(self) -> Path:
        return self.path / "spec.json"

    @property
    def train_file(self) -> Path:
        return self.path / "train.jsonl"

    @property
    def validation_file(self) -> Path:
        return self.path / "validation.jsonl"

    @property
    def status_file(self) -> Path:
        return self.path / "status.json"

    @property
    def events_file(self) -> Path:
        return self.path / "events.jsonl"

    @property
    def metrics_file(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def pid_file(self) -> Path:
        return self.path / "pid"

    @property
    def ray_job_file(self) -> Path:
        return self.path / "ray-job"

    def ray_job(self) -> dict[str, Any]:
        found = _read_json(self.ray_job_file)
        return found if isinstance(found, dict) else {}

    @property
    def cancel_file(self) -> Path:
        """Present once a cancel began: a dead worker is then not resumed."""
        return self.path / "cancel"

    @property
    def log_file(self) -> Path:
        return self.path / "worker.log"

    @property
    def checkpoints_dir(self) -> Path:
        return self.path / "checkpoints"

    @property
    def adapter_dir(self) -> Path:
        return self.path / "adapter"

    @property
    def model_dir(self) -> Path:
        return self.path / "model"

    @property
    def merged_dir(self) -> Path:
        return self.path / "merged"

    def exists(self) -> bool:
        return self.spec_file.is_file()

    def spec(self) -> dict[str, Any]:
        found = _read_json(self.spec_file)
        return found if isinstance(found, dict) else {}

    def status(self) -> dict[str, Any]:
        found = _read_json(self.status_file)
        return found if isinstance(found, dict) else {}

    def write_json(self, path: Path, value: Any) -> None:
        """Whole or not at all: a reader never sees half a file."""
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        temporary.write_bytes(orjson.dumps(value, option=orjson.OPT_INDENT_2))
        os.replace(temporary, path)

    def write_status(self, state: str, **fields: Any) -> None:
        self.write_json(
            self.status_file, {**self.status(), "state": state, "updated_at": time.time(), **fields}
        )

    def append(self, path: Path, record: dict[str, Any]) -> None:
        with path.open("ab") as handle:
            handle.write(orjson.dumps(record) + b"\n")

    def event(
        self, level: str, message: str, *, type: str = "message", data: dict[str, Any] | None = None
    ) -> None:
        self.append(
            self.events_file,
            {"created_at": int(time.time()), "level": level, "message": message, "type": type}
            | ({"data": data} if data is not None else {}),
        )

    def events(self) -> list[dict[str, Any]]:
        """Oldest first; each with its ``id`` (``<job id>:<line>``)."""
        return [
            {**event, "id": f"{self.job_id}:{number}"}
            for number, event in enumerate(_read_lines(self.events_file), start=1)
        ]

    def metrics(self) -> list[dict[str, Any]]:
        return _read_lines(self.metrics_file)

    def pid(self) -> tuple[int, str | None] | None:
        try:
            parts = self.pid_file.read_text().split()
        except FileNotFoundError:
            return None
        if not parts or not parts[0].isdigit():
            return None
        return int(parts[0]), parts[1] if len(parts) > 1 else None

    def checkpoints(self) -> list[tuple[int, Path]]:
        """(step, folder) of each checkpoint saved whole, by step."""
        if not self.checkpoints_dir.is_dir():
            return []
        found = []
        for child in self.checkpoints_dir.iterdir():
            match = _CHECKPOINT.match(child.name)
            # trainer_state.json is written last: a checkpoint without it is half saved.
            if match and (child / "trainer_state.json").is_file():
                found.append((int(match.group(1)), child))
        return sorted(found)

    def log_tail(self, lines: int = 5) -> str:
        try:
            text = self.log_file.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.strip().splitlines()[-lines:])
