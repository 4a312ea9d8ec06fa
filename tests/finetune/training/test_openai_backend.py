"""Contract tests of the OpenAI training backend: the real SDK against cassettes built from
real recordings and OpenAI's spec (see ``tests/finetune/_cassettes.py``); nothing records."""

from __future__ import annotations

from pathlib import Path

import pytest

from finetune import (
    BackendRefused,
    BackendUnavailable,
    FineTuningClosed,
    Hyperparameters,
    JobSpec,
    OpenAIBackend,
    TrainingConfig,
    TrainingJobNotFound,
    is_fine_tuning_closed,
)
from tests.finetune._cassettes import CASSETTES, RECORDINGS, contract_vcr

RECORDED_FILE = "file-Cbl1lel9YuFDEEYeJu0Kxyvq"
recorder = contract_vcr()


def _backend(sleeps: list[float] | None = None) -> OpenAIBackend:
    return OpenAIBackend(
        "openai",
        base_url="https://api.openai.com/v1",
        api_key="sk-test-not-a-key",
        max_retries=0,
        file_retry_seconds=2.0,
        file_retry_attempts=3,
        sleep=(sleeps if sleeps is not None else []).append,
    )


def _spec(base_model: str, training_file: str, **config: object) -> JobSpec:
    return JobSpec(
        config=TrainingConfig(base_model=base_model, **config),
        training_file=training_file,
    )


def test_upload_sends_the_file_and_returns_its_id() -> None:
    path = RECORDINGS / "finetune-data" / "ruby_sarcastic_chat.jsonl"
    with recorder.use_cassette("upload_file.yaml", allow_playback_repeats=True) as cassette:
        assert _backend().upload(path, filename="sarcastic.jsonl") == RECORDED_FILE
        assert _backend().upload(path.read_bytes(), filename="sarcastic.jsonl") == RECORDED_FILE
    assert cassette.play_count == 2


def test_upload_of_other_content_is_not_the_recorded_one() -> None:
    from vcr.errors import CannotOverwriteExistingCassetteException

    with (
        recorder.use_cassette("upload_file.yaml"),
        pytest.raises(CannotOverwriteExistingCassetteException),
    ):
        _backend().upload(b'{"messages": []}\n', filename="sarcastic.jsonl")


def test_a_processed_file_is_ready() -> None:
    with recorder.use_cassette("retrieve_file_processed.yaml") as cassette:
        _backend().wait_for_file(RECORDED_FILE, timeout_seconds=5)
    assert cassette.play_count == 1


def test_create_starts_a_job_that_validates_its_files() -> None:
    with recorder.use_cassette("create_job.yaml"):
        status = _backend().start(_spec("gpt-4o-2024-08-06", RECORDED_FILE))
    assert status.backend_job_id == "ftjob-FO6z0rNnNUmHe4xiVOHC7TEk"
    assert status.state == "validating_files"
    assert status.fine_tuned_model is None and status.error is None


def test_create_sends_dpo_with_its_beta() -> None:
    spec = JobSpec(
        config=TrainingConfig(base_model="gpt-4o-mini", method="dpo", beta=0.1),
        training_file="file-abc123",
        validation_file="file-abc123",
    )
    with recorder.use_cassette("create_job_dpo.yaml") as cassette:
        status = _backend().start(spec)
    assert cassette.play_count == 1
    assert (status.backend_job_id, status.state) == ("ftjob-abc", "queued")


def test_a_file_still_processing_is_retried_then_the_job_starts() -> None:
    sleeps: list[float] = []
    with recorder.use_cassette("create_job_file_still_processing.yaml") as cassette:
        status = _backend(sleeps).start(_spec("gpt-4o-mini", "file-abc123"))
    assert cassette.play_count == 2 and sleeps == [2.0]
    assert (status.backend_job_id, status.state) == ("ftjob-abc123", "queued")


def test_closed_self_serve_fine_tuning_is_said_plainly() -> None:
    with (
        recorder.use_cassette("create_job_closed.yaml"),
        pytest.raises(FineTuningClosed) as refused,
    ):
        _backend().start(_spec("gpt-4o-mini", "file-abc123"))
    message = refused.value.message
    assert message.startswith(
        "OpenAI refused to start the fine-tuning job because self-serve fine-tuning is closed "
        "to this organisation"
    )
    assert "2027-01-06" in message and "Fine-tuning is not available" in message
    assert refused.value.code == "fine_tuning_closed"


def test_a_permanent_400_is_refused_without_retry() -> None:
    sleeps: list[float] = []
    with (
        recorder.use_cassette("create_job_bad_model.yaml"),
        pytest.raises(BackendRefused) as refused,
    ):
        _backend(sleeps).start(_spec("gpt-unknown", "file-abc123"))
    assert not isinstance(refused.value, FineTuningClosed)
    assert refused.value.code == "model_not_available" and refused.value.param == "model"
    assert sleeps == []


def test_a_429_is_transient() -> None:
    with (
        recorder.use_cassette("create_job_rate_limited.yaml"),
        pytest.raises(BackendUnavailable) as refused,
    ):
        _backend().start(_spec("gpt-4o-mini", "file-abc123"))
    assert "429" in refused.value.message


def test_retrieve_reads_the_finished_job() -> None:
    with recorder.use_cassette("retrieve_job_succeeded.yaml"):
        status = _backend().status("ftjob-abc123")
    assert status.state == "succeeded"
    assert status.fine_tuned_model is not None and status.fine_tuned_model.startswith("ft:")
    assert status.trained_tokens is not None and status.trained_tokens > 0


@pytest.mark.parametrize(
    ("cassette", "call"),
    [
        ("retrieve_job_404.yaml", lambda b: b.status("123")),
        ("events_404.yaml", lambda b: b.events("123")),
        ("cancel_404.yaml", lambda b: b.cancel("123")),
    ],
)
def test_an_unknown_job_is_not_found(cassette: str, call: object) -> None:
    with recorder.use_cassette(cassette), pytest.raises(TrainingJobNotFound) as missing:
        call(_backend())  # type: ignore[operator]
    assert missing.value.message == "Could not find fine tune: 123"
    assert missing.value.code == "fine_tune_not_found"


def test_events_come_oldest_first_and_stop_at_the_last_one_seen() -> None:
    with recorder.use_cassette("events.yaml", allow_playback_repeats=True):
        events = _backend().events("ftjob-abc123")
        assert [e.message for e in events][-1] == "Fine tuning job successfully completed"
        assert [e.created_at for e in events] == sorted(e.created_at for e in events)
        assert _backend().events("ftjob-abc123", after=events[-1].id) == []
        assert _backend().events("ftjob-abc123", after=events[0].id) == events[1:]


def test_checkpoints_carry_their_metrics_by_step() -> None:
    with recorder.use_cassette("checkpoints.yaml"):
        checkpoints = _backend().checkpoints("ftjob-abc123")
    assert [c.step for c in checkpoints] == [1000, 2000]
    assert checkpoints[1].metrics == {
        "full_valid_loss": 0.134,
        "full_valid_mean_token_accuracy": 0.874,
    }
    assert checkpoints[1].model.endswith(":ckpt-step-2000")


def test_cancel_returns_the_cancelled_job() -> None:
    with recorder.use_cassette("cancel.yaml"):
        assert _backend().cancel("ftjob-abc123").state == "cancelled"


def test_a_job_is_found_only_by_its_own_metadata() -> None:
    with recorder.use_cassette("list_jobs.yaml"):
        assert _backend().find_job({"stillroom_job_id": "trj_1"}) is None


def test_the_hyperparameters_go_in_the_method() -> None:
    from finetune.training._openai import method_body

    config = TrainingConfig(
        base_model="gpt-4o-mini",
        hyperparameters=Hyperparameters(n_epochs=2, learning_rate_multiplier=0.5),
    )
    assert method_body(JobSpec(config=config, training_file="f")) == {
        "type": "supervised",
        "supervised": {
            "hyperparameters": {
                "n_epochs": 2,
                "batch_size": "auto",
                "learning_rate_multiplier": 0.5,
            }
        },
    }


@pytest.mark.parametrize(
    ("message", "code", "closed"),
    [
        ("Fine-tuning is not available for your organization.", None, True),
        ("Self-serve fine-tuning is closed: no new jobs are accepted.", None, True),
        ("Your organisation can no longer create fine tuning jobs.", "fine_tuning_closed", True),
        ("Model gpt-x is not available for fine-tuning or does not exist.", None, False),
        ("Could not find fine tune: 123", "fine_tune_not_found", False),
        ("File file-1 is still being processed.", None, False),
    ],
)
def test_closed_fine_tuning_is_recognised_loosely(
    message: str, code: str | None, closed: bool
) -> None:
    assert is_fine_tuning_closed(message, code) is closed


def test_no_cassette_holds_a_secret() -> None:
    for path in Path(CASSETTES).glob("*.yaml"):
        text = path.read_text()
        assert "Bearer" not in text and "sk-" not in text
        assert "authorization" not in text.lower() and "set-cookie" not in text.lower()
