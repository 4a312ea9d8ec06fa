"""The local training backend, for real: a tiny random-initialised model trained on CPU by
worker processes (SFT with tools and a ``weight: 0`` turn, DPO), cancel, ``kill -9``, a new
backend object re-attaching to a running job, and bad base models refused at launch."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from finetune import (
    BackendConfig,
    Hyperparameters,
    InvalidTrainingRequest,
    JobSpec,
    TrainingConfig,
    make_backend,
)
from finetune.training.local import IGNORE, LocalBackend, LocalTrainingConfig, encode_sft
from tests.tinymodel import build_tiny_model, chat_examples, preference_examples

pytest.importorskip("trl", reason="the train extra is not installed (make install-train)")

TERMINAL = ("succeeded", "failed", "cancelled")


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny-qwen2")


def _jsonl(rows: list[dict[str, Any]]) -> bytes:
    return b"".join(orjson.dumps(row) + b"\n" for row in rows)


def _backend(root: Path, **settings: Any) -> LocalBackend:
    config = BackendConfig(
        kind="local", root=str(root), logging_steps=1, save_total_limit=1, **settings
    )
    backend = make_backend("local", config)
    assert isinstance(backend, LocalBackend)
    return backend


def _start(
    backend: LocalBackend,
    model: Path,
    rows: list[dict[str, Any]],
    *,
    method: str = "supervised",
    validation: list[dict[str, Any]] | None = None,
    epochs: int = 2,
    multiplier: float = 50.0,
    tag: str = "job",
) -> str:
    train_id = backend.upload(_jsonl(rows), filename="train.jsonl")
    validation_id = (
        backend.upload(_jsonl(validation), filename="validation.jsonl") if validation else None
    )
    config = TrainingConfig(
        base_model=str(model),
        suffix="test",
        method=method,
        hyperparameters=Hyperparameters(
            n_epochs=epochs, batch_size=4, learning_rate_multiplier=multiplier
        ),
    )
    status = backend.start(
        JobSpec(
            config=config,
            training_file=train_id,
            validation_file=validation_id,
            metadata={"stillroom_job_id": tag},
        )
    )
    return status.backend_job_id


def _wait(backend: LocalBackend, job_id: str, *, until: tuple[str, ...] = TERMINAL) -> str:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        state = backend.status(job_id).state
        if state in until:
            return state
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} still {state}; log:\n{_log(backend, job_id)}")


def _log(backend: LocalBackend, job_id: str) -> str:
    return backend.job_folder(job_id).log_tail(40)


def _worker_alive(backend: LocalBackend, job_id: str) -> bool:
    found = backend.job_folder(job_id).pid()
    assert found is not None
    try:
        os.kill(found[0], 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{found[0]}/stat").read_text()
    return stat[stat.rfind(")") + 2] != "Z"


def test_only_trained_assistant_tokens_carry_loss(tiny_model: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    weighted, tool = chat_examples(3)[1], chat_examples(3)[0]
    encoded = encode_sft(tokenizer, weighted, max_length=512)
    assert encoded is not None
    trained = [label for label in encoded["labels"] if label != IGNORE]
    # Only the last answer: the weight-0 turn, the system and user turns carry no loss.
    assert tokenizer.decode(trained) == weighted["messages"][-1]["content"] + "<|im_end|>\n"
    full = tokenizer.decode(encoded["input_ids"])
    assert "Old answer from someone else.<|im_end|>" in full
    calls = encode_sft(tokenizer, tool, max_length=512)
    assert calls is not None
    learned = tokenizer.decode([label for label in calls["labels"] if label != IGNORE])
    assert learned.startswith('<tool_call>{"name": "get_weather", "arguments": {"city": ')
    assert learned.endswith(tool["messages"][-1]["content"] + "<|im_end|>\n")
    assert "sunny, 20" not in learned  # the tool's result is context
    only_context = {"messages": [*weighted["messages"][:3]]}
    assert encode_sft(tokenizer, only_context, max_length=512) is None


@pytest.fixture(scope="module")
def jobs(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """An SFT job and a DPO job, started together (two workers overlap their start-up), each
    also writing the merged model."""
    backend = _backend(tmp_path_factory.mktemp("jobs"), merge=True)
    return {
        "root": str(backend.root),
        "sft": _start(
            backend, tiny_model, chat_examples(16), validation=chat_examples(4, seed=7), tag="sft"
        ),
        "dpo": _start(
            backend, tiny_model, preference_examples(8), method="dpo", epochs=1, tag="dpo"
        ),
    }


@pytest.fixture(scope="module")
def sft_job(jobs: dict[str, str]) -> tuple[LocalBackend, str]:
    backend = _backend(Path(jobs["root"]), merge=True)
    job_id = jobs["sft"]
    assert _wait(backend, job_id) == "succeeded", _log(backend, job_id)
    return backend, job_id


def test_sft_job_succeeds_with_an_ft_model_name(sft_job: tuple[LocalBackend, str]) -> None:
    backend, job_id = sft_job
    status = backend.status(job_id)
    assert status.fine_tuned_model == f"ft:tiny-qwen2:local:test:{job_id}"
    assert status.trained_tokens is not None and status.trained_tokens > 1000
    assert backend.find_job({"stillroom_job_id": "sft"}) == status


def test_sft_loss_falls_and_eval_loss_is_logged_per_epoch(
    sft_job: tuple[LocalBackend, str],
) -> None:
    backend, job_id = sft_job
    metrics = backend.job_folder(job_id).metrics()
    losses = [m["loss"] for m in metrics if "loss" in m]
    evals = [m for m in metrics if "eval_loss" in m]
    assert len(losses) == 8  # 16 examples, batch 4, 2 epochs
    assert losses[-1] < losses[0] - 0.2
    assert [round(m["epoch"]) for m in evals] == [1, 2]
    assert evals[1]["eval_loss"] < evals[0]["eval_loss"]
    assert all(
        m["tokens_per_second"] > 0 and m["learning_rate"] > 0 for m in metrics if "loss" in m
    )
    events = backend.events(job_id)
    charted = [e.data for e in events if e.type == "metrics" and e.data and "train_loss" in e.data]
    assert [d["step"] for d in charted] == list(range(1, 9))
    assert charted[0]["total_steps"] == 8
    assert backend.events(job_id, after=events[-2].id) == events[-1:]
    checkpoints = backend.checkpoints(job_id)
    assert [c.step for c in checkpoints] == [8]  # save_total_limit=1 keeps the last
    assert checkpoints[0].model.endswith(":ckpt-step-8")
    assert checkpoints[0].metrics["valid_loss"] == evals[1]["eval_loss"]


def test_sft_adapter_loads_and_changes_the_output(
    sft_job: tuple[LocalBackend, str], tiny_model: Path
) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    backend, job_id = sft_job
    adapter = backend.artifacts(job_id)["adapter"]
    assert (adapter / "adapter_model.safetensors").is_file()
    assert orjson.loads((adapter / "adapter_config.json").read_bytes())["r"] == 16
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    example = encode_sft(tokenizer, chat_examples(16)[2], max_length=512)
    assert example is not None
    ids = torch.tensor([example["input_ids"]])
    labels = torch.tensor([example["labels"]])
    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    with torch.no_grad():
        before = base(input_ids=ids, labels=labels)
        base_loss, base_logits = float(before.loss), before.logits.clone()
        tuned = PeftModel.from_pretrained(base, adapter)
        after = tuned(input_ids=ids, labels=labels)
    assert not torch.allclose(base_logits, after.logits, atol=1e-3)
    # The answer it trained on is likelier with the adapter than without.
    assert float(after.loss) < base_loss - 0.2
    # The merged model (base + adapter in one) answers as the adapter does.
    merged = AutoModelForCausalLM.from_pretrained(backend.artifacts(job_id)["merged"])
    with torch.no_grad():
        assert torch.allclose(merged(input_ids=ids).logits, after.logits, atol=1e-4)


def test_dpo_job_trains_a_few_steps(jobs: dict[str, str]) -> None:
    backend = _backend(Path(jobs["root"]))
    job_id = jobs["dpo"]
    assert _wait(backend, job_id) == "succeeded", _log(backend, job_id)
    metrics = backend.job_folder(job_id).metrics()
    assert [m["step"] for m in metrics if "loss" in m] == [1, 2]
    assert (backend.artifacts(job_id)["adapter"] / "adapter_model.safetensors").is_file()
    spec = backend.job_folder(job_id).spec()
    assert spec["hyperparameters"]["beta"] == 0.1
    assert spec["hyperparameters"]["learning_rate"] == pytest.approx(50 * 5e-5)


def test_a_new_backend_reattaches_and_cancel_stops_the_worker(
    tiny_model: Path, tmp_path: Path
) -> None:
    first = _backend(tmp_path, cancel_grace_seconds=3)
    job_id = _start(first, tiny_model, chat_examples(40), epochs=50, tag="long")
    assert _wait(first, job_id, until=("running", *TERMINAL)) == "running"
    # A restarted server: a new backend object over the same root reads the running job.
    again = _backend(tmp_path, cancel_grace_seconds=3)
    assert again.status(job_id).state == "running"
    assert again.find_job({"stillroom_job_id": "long"}) is not None
    assert "Training started" in [e.message for e in again.events(job_id)]
    status = again.cancel(job_id)
    assert status.state == "cancelled"
    assert not _worker_alive(again, job_id)
    assert first.status(job_id).state == "cancelled"
    assert again.events(job_id)[-1].message == "Job cancelled"


def test_a_worker_killed_with_sigkill_fails_its_job_with_the_reason(
    tiny_model: Path, tmp_path: Path
) -> None:
    backend = _backend(tmp_path)
    job_id = _start(backend, tiny_model, chat_examples(40), epochs=50)
    assert _wait(backend, job_id, until=("running", *TERMINAL)) == "running"
    found = backend.job_folder(job_id).pid()
    assert found is not None
    os.killpg(found[0], signal.SIGKILL)
    assert _wait(backend, job_id) == "failed"
    error = backend.status(job_id).error
    assert error is not None
    assert error["code"] == "worker_died"
    assert "kill -9, or out of memory" in error["message"]
    assert backend.events(job_id)[-1].level == "error"


def test_a_missing_base_model_is_refused_before_anything_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = _backend(tmp_path / "root")
    train_id = backend.upload(_jsonl(chat_examples(4)), filename="train.jsonl")
    not_a_model = tmp_path / "empty"
    not_a_model.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    for base, reason in [
        (str(tmp_path / "nowhere"), "no such folder"),
        (str(not_a_model), "has no config.json"),
        ("Qwen/Qwen2.5-0.5B-Instruct", "not in the local cache"),
    ]:
        spec = JobSpec(config=TrainingConfig(base_model=base), training_file=train_id)
        with pytest.raises(InvalidTrainingRequest, match=reason) as refused:
            backend.start(spec)
        assert refused.value.code == "model_not_found"
    assert sorted(p.name for p in (tmp_path / "root").iterdir()) == ["files"]


def test_a_cached_hub_id_resolves_to_its_snapshot(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from finetune.training.local import resolve_base_model

    snapshot = tmp_path / "hub" / "models--acme--tiny" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_bytes((tiny_model / "config.json").read_bytes())
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    assert resolve_base_model("acme/tiny") == str(snapshot)


def test_settings_of_the_local_kind_are_checked() -> None:
    with pytest.raises(InvalidTrainingRequest, match="misconfigured"):
        make_backend("gpu", BackendConfig(kind="local", lora_rank=0))
    backend = make_backend("gpu", BackendConfig(kind="local", tuning="full", max_length=64))
    assert isinstance(backend, LocalBackend)
    assert backend.config == LocalTrainingConfig(tuning="full", max_length=64)


def test_the_validator_counts_with_the_base_models_tokenizer_and_context(
    tiny_model: Path, tmp_path: Path
) -> None:
    from transformers import AutoTokenizer

    from finetune import split_lines, validate_jsonl

    backend = _backend(tmp_path, max_length=200)
    options = backend.validation_options(TrainingConfig(base_model=str(tiny_model)))
    assert options is not None
    assert options.token_limit == 200
    assert options.counter is not None
    text = "The weather in Paris is sunny today."
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    assert options.counter.text(text) == len(tokenizer(text, add_special_tokens=False).input_ids)
    long = {
        "messages": [{"role": "user", "content": text * 40}, {"role": "assistant", "content": text}]
    }
    report = validate_jsonl(split_lines(_jsonl([*chat_examples(10, tools=False), long])), options)
    assert report.encoding == "tiny-qwen2 tokenizer"
    assert report.token_limit == 200
    assert report.over_token_limit == [11]


def test_the_server_side_never_imports_the_training_libraries(tmp_path: Path) -> None:
    import subprocess
    import sys

    code = (
        "import sys, proxy._app, finetune\n"
        "from finetune.training.local import LocalBackend, LocalTrainingConfig\n"
        f"b = LocalBackend('local', LocalTrainingConfig(root={str(tmp_path)!r}))\n"
        "b.upload(b'{}', filename='x.jsonl')\n"
        "heavy = {'torch', 'transformers', 'trl', 'peft', 'datasets'} & set(sys.modules)\n"
        "print(sorted(heavy))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_a_killed_worker_resumes_from_its_last_checkpoint(tiny_model: Path, tmp_path: Path) -> None:
    backend = _backend(tmp_path, save_steps=1)
    job_id = _start(backend, tiny_model, chat_examples(8), epochs=2)
    folder = backend.job_folder(job_id)
    deadline = time.monotonic() + 300
    while not folder.checkpoints() and time.monotonic() < deadline:
        assert backend.status(job_id).state not in TERMINAL, _log(backend, job_id)
        time.sleep(0.1)
    step = folder.checkpoints()[-1][0]
    found = folder.pid()
    assert found is not None
    os.killpg(found[0], signal.SIGKILL)
    assert _wait(backend, job_id) == "succeeded", _log(backend, job_id)
    messages = [e.message for e in backend.events(job_id)]
    assert any("resuming from the checkpoint at step" in m for m in messages)
    assert any(m.startswith("Resuming from the checkpoint at step") for m in messages)
    assert folder.status()["resumes"] == 1
    steps = [m["step"] for m in folder.metrics() if "loss" in m]
    assert steps[-1] == 4
    # The resumed worker carried on from the checkpoint's step, not from the start.
    assert steps.count(1) == 1
    assert step == 4 or step + 1 in steps


def test_a_local_job_is_launched_and_tracked_like_any_other(
    tiny_model: Path, tmp_path: Path
) -> None:
    from finetune import job_detail, launch_job, wait_for_job
    from storage import make_engine, upgrade
    from tests.finetune._training_helpers import training_dataset

    engine = make_engine(f"sqlite:///{tmp_path / 'stillroom.db'}")
    upgrade(engine)
    dataset_id = training_dataset(engine, train=12, validation=2)
    backend = _backend(tmp_path / "jobs")
    config = TrainingConfig(
        base_model=str(tiny_model),
        suffix="squares",
        hyperparameters=Hyperparameters(n_epochs=1, batch_size=4, learning_rate_multiplier=10),
    )
    job = launch_job(engine, backend, dataset_id, config)
    assert job.backend == "local"
    assert job.backend_job_id is not None and job.backend_job_id.startswith("ftjob-")
    done = wait_for_job(engine, backend, job.id, poll_seconds=0.5, timeout_seconds=300)
    assert done.state == "succeeded", _log(backend, job.backend_job_id)
    assert done.fine_tuned_model == f"ft:tiny-qwen2:local:squares:{job.backend_job_id}"
    detail = job_detail(engine, job.id)
    steps = [
        e.data["step"]
        for e in detail.events
        if e.type == "metrics" and e.data and "train_loss" in e.data
    ]
    assert steps == [1, 2, 3]
    assert [c.step for c in detail.checkpoints] == [3]
    assert "valid_loss" in detail.checkpoints[0].metrics
    spec = backend.job_folder(job.backend_job_id).spec()
    assert spec["metadata"]["stillroom_job_id"] == job.id
    engine.dispose()


def test_data_with_nothing_to_learn_fails_the_job_with_the_reason(
    tiny_model: Path, tmp_path: Path
) -> None:
    from finetune.training.local import worker

    # The folder laid out by start(), with a worker that does nothing: training runs here.
    backend = _backend(tmp_path, python="/bin/true")
    context_only = [
        {"messages": e["messages"][:3]}
        for e in chat_examples(6)
        if e["messages"][2].get("weight") == 0
    ]
    assert len(context_only) == 2
    train_id = backend.upload(_jsonl(context_only), filename="train.jsonl")
    spec = JobSpec(config=TrainingConfig(base_model=str(tiny_model)), training_file=train_id)
    folder = backend.job_folder(backend.start(spec).backend_job_id)
    with pytest.raises(worker.JobFailed, match="no training example has an assistant") as failed:
        worker.train(folder)
    assert failed.value.code == "no_trainable_examples"


def test_the_worker_loads_the_base_without_hub_kernels_unless_the_settings_ask(
    tiny_model: Path,
) -> None:
    # transformers turns hub kernels on by default; on a GPU they are fetched when training
    # starts, which fails on an offline machine.
    from transformers import AutoModelForCausalLM

    from finetune.training.local import LocalTrainingConfig, worker

    default = LocalTrainingConfig().model_dump(mode="json")
    assert default["hub_kernels"] is False
    model = worker.load_model(AutoModelForCausalLM, str(tiny_model), None, default)
    assert model.use_kernels is False
    older = {k: v for k, v in default.items() if k != "hub_kernels"}  # a spec from before
    assert (
        worker.load_model(AutoModelForCausalLM, str(tiny_model), None, older).use_kernels is False
    )
    asked = worker.load_model(
        AutoModelForCausalLM, str(tiny_model), None, default | {"hub_kernels": True}
    )
    assert asked.use_kernels is True
