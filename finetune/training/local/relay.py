"""The Ray node's side of a job without a shared file system:
``python -m finetune.training.local.relay URI -- WORKER COMMAND``.

Started as the Ray job's entrypoint in its ``working_dir`` (the job folder's spec, data, status
and events as they were at submission). It copies them into a scratch folder, fetches the whole
checkpoints an earlier attempt left at URI, runs the worker command on that folder (the folder
is its last argument), pushes what the worker writes to URI every few seconds and everything at
the end, and exits as the worker did. The worker's output is the Ray job's log.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from finetune.training.local._folder import JobFolder
from finetune.training.local._transfer import JobStore, fetch_checkpoints, push

INPUTS = (
    "spec.json",
    "train.jsonl",
    "validation.jsonl",
    "status.json",
    "events.jsonl",
    "metrics.jsonl",
)
PUSH_SECONDS = 5.0


def relay(uri: str, command: list[str], inputs: Path) -> int:
    store = JobStore(uri)
    scratch = Path(tempfile.mkdtemp(prefix="stillroom-job-"))
    try:
        folder = JobFolder(scratch)
        for name in INPUTS:
            if (inputs / name).is_file():
                shutil.copyfile(inputs / name, scratch / name)
        fetch_checkpoints(store, folder)
        pushed = {path.name for _, path in folder.checkpoints()}
        # Ray stops a job with SIGTERM to each of its processes: the worker writes its
        # cancelled status, and the relay stays to push it.
        signal.signal(signal.SIGTERM, _ignore)
        child = subprocess.Popen([*command, str(scratch)], stdin=subprocess.DEVNULL)  # noqa: S603
        while True:
            try:
                child.wait(timeout=PUSH_SECONDS)
                break
            except subprocess.TimeoutExpired:
                try:
                    push(store, folder, pushed)
                except Exception as exc:  # noqa: BLE001 - the next push sends it all again
                    print(f"relay: cannot push to {uri} yet: {exc!r}", file=sys.stderr)
        push(store, folder, pushed, final=True)
        return child.returncode if child.returncode >= 0 else 128 - child.returncode
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _ignore(signum: int, frame: Any) -> None:
    return None


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) < 3 or args[1] != "--":
        print(
            "usage: python -m finetune.training.local.relay URI -- WORKER COMMAND", file=sys.stderr
        )
        return 2
    return relay(args[0], args[2:], Path.cwd())


if __name__ == "__main__":
    sys.exit(main())
