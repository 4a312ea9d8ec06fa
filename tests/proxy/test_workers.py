"""How many workers ``serve`` starts, and the folder their metrics share."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from proxy import SettingsError, load_settings
from proxy._workers import MULTIPROCESS_ENV, shared_metrics_dir, worker_count


@pytest.mark.parametrize("value", ["auto", "AUTO", "0"])
def test_auto_or_zero_workers_means_one_per_cpu_this_process_may_use(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("STILLROOM_WORKERS", value)
    settings = load_settings()
    assert settings.workers == 0
    assert worker_count(settings.workers) == len(os.sched_getaffinity(0))


def test_auto_workers_follow_the_cpus_the_process_is_pinned_to(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if hasattr(os, "process_cpu_count"):  # Python 3.13+ asks the affinity mask through it
        monkeypatch.setattr(os, "process_cpu_count", lambda: 1)
    else:
        monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {3})
    assert worker_count(0) == 1


def test_auto_workers_from_a_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STILLROOM_WORKERS", raising=False)
    config = tmp_path / "stillroom.toml"
    config.write_text('workers = "auto"\n')
    assert load_settings(config).workers == 0


def test_a_number_of_workers_is_taken_as_it_is() -> None:
    assert worker_count(3) == 3


def test_workers_that_are_neither_a_number_nor_auto_are_refused_by_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STILLROOM_WORKERS", "many")
    with pytest.raises(
        SettingsError, match=r"STILLROOM_WORKERS: .*a number of worker processes, or auto"
    ):
        load_settings()


def test_the_shared_metrics_folder_is_new_named_for_the_workers_and_removed_after(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(MULTIPROCESS_ENV, "/somewhere/else")
    with shared_metrics_dir() as folder:
        assert os.environ[MULTIPROCESS_ENV] == str(folder)
        assert list(folder.iterdir()) == []
        (folder / "counter_123.db").write_bytes(b"\0" * 8)
    assert not folder.exists()
    assert os.environ[MULTIPROCESS_ENV] == "/somewhere/else"
