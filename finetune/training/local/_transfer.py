"""How a job's files travel when the Ray nodes do not share the job root with the server.

    <artifact_uri>/<job id>/   what the worker wrote on its node: status.json, events.jsonl,
                               metrics.jsonl, checkpoints/, adapter/, model/, merged/

The relay on the node pushes (``push``), the backend pulls into the job folder (``pull``).
Their order makes every state the backend can see a whole one: a checkpoint's
``trainer_state.json`` goes last, the outputs go before a final status, and a final status is
only pushed at the end. Any fsspec URL works (``s3://``, ``gs://``, ``abfs://``, ``file://``
on a mount), with its fsspec package (``s3fs``, ``gcsfs``, …) on both sides.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import Any

import orjson

from finetune.training.local._folder import TERMINAL, JobFolder

PROGRESS = ("events.jsonl", "metrics.jsonl")
"""Appended by the worker: a copy replaces the other side's only when it is no shorter."""

OUTPUTS = ("adapter", "model", "merged")
_LAST = "trainer_state.json"


class JobStore:
    """One job's folder in the object store."""

    def __init__(self, uri: str) -> None:
        import fsspec

        fs, base = fsspec.core.url_to_fs(uri)
        self.fs: Any = fs
        self.base = str(base).rstrip("/")

    def _path(self, name: str) -> str:
        return f"{self.base}/{name}" if name else self.base

    def read(self, name: str) -> bytes | None:
        try:
            return bytes(self.fs.cat_file(self._path(name)))
        except FileNotFoundError:
            return None

    def write(self, name: str, data: bytes) -> None:
        path = self._path(name)
        self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        self.fs.pipe_file(path, data)

    def exists(self, name: str) -> bool:
        return bool(self.fs.exists(self._path(name)))

    def names(self, name: str) -> list[str]:
        """The entries of a folder, by name; none when there is no such folder."""
        try:
            found = self.fs.ls(self._path(name), detail=False)
        except FileNotFoundError:
            return []
        return sorted(str(path).rstrip("/").rsplit("/", 1)[-1] for path in found)

    def put_folder(self, local: Path, name: str) -> None:
        files = sorted(
            (path for path in local.rglob("*") if path.is_file()), key=lambda p: p.name == _LAST
        )
        for path in files:
            target = self._path(f"{name}/{path.relative_to(local).as_posix()}")
            self.fs.makedirs(target.rsplit("/", 1)[0], exist_ok=True)
            self.fs.put_file(str(path), target)

    def get_folder(self, name: str, local: Path) -> None:
        """Into ``local`` whole or not at all: fetched beside it, then renamed."""
        prefix = self._path(name) + "/"
        partial = local.with_name(f".{local.name}.partial")
        shutil.rmtree(partial, ignore_errors=True)
        for remote in sorted(str(path) for path in self.fs.find(self._path(name))):
            target = partial / remote.removeprefix(prefix)
            target.parent.mkdir(parents=True, exist_ok=True)
            self.fs.get_file(remote, str(target))
        if partial.is_dir():
            shutil.rmtree(local, ignore_errors=True)
            os.replace(partial, local)

    def remove(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm(self._path(name), recursive=True)


def _state(data: bytes | None) -> str | None:
    try:
        found = orjson.loads(data) if data else None
    except orjson.JSONDecodeError:
        return None
    return str(found.get("state")) if isinstance(found, dict) else None


# -- the node's side ----------------------------------------------------------------------------


def push(store: JobStore, folder: JobFolder, pushed: set[str], *, final: bool = False) -> None:
    """What the worker wrote since the last push; ``pushed`` holds the checkpoints sent so far.
    A final status only goes with ``final``, after the outputs."""
    for name in PROGRESS:
        path = folder.path / name
        if path.is_file():
            store.write(name, path.read_bytes())
    whole = {path.name for _, path in folder.checkpoints()}
    for name in sorted(whole - pushed):
        store.put_folder(folder.checkpoints_dir / name, f"checkpoints/{name}")
        pushed.add(name)
    for name in sorted(pushed - whole):  # the trainer's save_total_limit removed it
        store.remove(f"checkpoints/{name}")
        pushed.discard(name)
    if final:
        for name in OUTPUTS:
            if (folder.path / name).is_dir():
                store.put_folder(folder.path / name, name)
    if folder.status_file.is_file():
        status = folder.status_file.read_bytes()
        if final or _state(status) not in TERMINAL:
            store.write("status.json", status)


def fetch_checkpoints(store: JobStore, folder: JobFolder) -> None:
    """An earlier attempt's whole checkpoints, for a resumed worker to start from."""
    for name in store.names("checkpoints"):
        if store.exists(f"checkpoints/{name}/{_LAST}"):
            store.get_folder(f"checkpoints/{name}", folder.checkpoints_dir / name)


# -- the server's side --------------------------------------------------------------------------


def pull(store: JobStore, folder: JobFolder) -> None:
    """The worker's files into the job folder. Checkpoints come as their ``trainer_state.json``
    only (enough to list them and to know a resume can start; the weights stay in the store).
    Once the folder's status is final, nothing more is pulled."""
    if folder.status().get("state") in TERMINAL:
        return
    status = store.read("status.json")
    for name in PROGRESS:
        data = store.read(name)
        path = folder.path / name
        if data is not None and len(data) >= (path.stat().st_size if path.is_file() else 0):
            temporary = path.with_name(f".{name}.pull")
            temporary.write_bytes(data)
            os.replace(temporary, path)
    remote = set(store.names("checkpoints"))
    for name in sorted(remote):
        state = store.read(f"checkpoints/{name}/{_LAST}")
        target = folder.checkpoints_dir / name / _LAST
        if state is not None and not target.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            folder.write_json(target, orjson.loads(state))
    for _, path in folder.checkpoints():
        if path.name not in remote:
            shutil.rmtree(path, ignore_errors=True)
    if status is None or _state(status) is None:
        return
    found = orjson.loads(status)
    if found.get("state") in TERMINAL:
        for name in OUTPUTS:
            if store.exists(name):
                store.get_folder(name, folder.path / name)
    # The folder's own fields (created_at, resumes) stay; the worker's state wins.
    folder.write_json(folder.status_file, {**folder.status(), **found})
