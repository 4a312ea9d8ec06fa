"""The training worker: ``python -m finetune.training.local.worker JOB_DIR``.

Runs one job in a process of its own (the backend starts it in a new session), reads the job
folder's spec and data, trains with TRL (SFT or DPO) and PEFT LoRA (or full fine-tuning), and
writes metrics, events, checkpoints, the adapter and a final status into the folder. A job with
checkpoints resumes from the last one. SIGTERM cancels. torch, transformers, trl and peft are
imported here only: never by the server.

Under ``accelerate launch`` (a job with more than one GPU) each GPU has a process of its own;
only the first (``RANK`` 0) writes the folder, the trainer saving its checkpoints from there too.
"""

from __future__ import annotations

import errno
import os
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import orjson

from finetune.training.local._encode import TemplateError, dpo_row, encode_sft
from finetune.training.local._folder import JobFolder


def _first_process() -> bool:
    return os.environ.get("RANK", "0") == "0"


class _SilentFolder(JobFolder):
    """The folder as another GPU's process sees it: read, never written."""

    __slots__ = ()

    def write_json(self, path: Path, value: Any) -> None:
        return None

    def append(self, path: Path, record: dict[str, Any]) -> None:
        return None


class JobFailed(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _lines(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def _on_sigterm(folder: JobFolder) -> Any:
    def handler(signum: int, frame: Any) -> None:
        if folder.status().get("state") not in ("succeeded", "failed"):
            folder.write_status("cancelled", error=None)
            folder.event("info", "Job cancelled")
        os._exit(143)

    return handler


def _precision(setting: str, cuda: bool, torch: Any) -> str:
    if setting != "auto":
        return setting
    return "bf16" if cuda and torch.cuda.is_bf16_supported() else "fp32"


def load_model(auto: Any, base: str, dtype: Any, settings: dict[str, Any]) -> Any:
    """The base model. Hub kernels stay off unless asked for: transformers turns them on by
    default where it can, and on a GPU they are fetched when training starts, which fails
    offline and runs code the job never named."""
    return auto.from_pretrained(base, dtype=dtype, use_kernels=settings.get("hub_kernels", False))


def train(folder: JobFolder) -> None:
    spec = folder.spec()
    settings: dict[str, Any] = spec["settings"]
    hyper: dict[str, Any] = spec["hyperparameters"]
    method: str = spec["method"]

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback

    cuda = torch.cuda.is_available()
    precision = _precision(settings["precision"], cuda, torch)
    if precision in ("bf16", "fp16") and not cuda:
        precision = "fp32"  # mixed precision needs a GPU; on a CPU it only slows
    checkpointing = settings["gradient_checkpointing"]
    if checkpointing is None:
        checkpointing = cuda
    base = spec["base_model_path"]
    tokenizer = AutoTokenizer.from_pretrained(base)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    model = load_model(AutoModelForCausalLM, base, dtype, settings)
    folder.event("info", f"Loaded base model {spec['base_model']} ({precision})")

    lora = settings["tuning"] == "lora"
    peft_config = None
    if lora:
        from peft import LoraConfig

        peft_config = LoraConfig(
            r=settings["lora_rank"],
            lora_alpha=settings["lora_alpha"],
            lora_dropout=settings["lora_dropout"],
            target_modules=settings["lora_target_modules"],
            task_type="CAUSAL_LM",
        )

    from datasets import Dataset

    max_length = settings["max_length"]
    train_raw = _lines(folder.train_file)
    validation_raw = _lines(folder.validation_file)
    if method == "dpo":
        train_rows = [row for row in map(dpo_row, train_raw) if row is not None]
        validation_rows = [row for row in map(dpo_row, validation_raw) if row is not None]
    else:
        try:
            train_rows = [
                row for line in train_raw if (row := encode_sft(tokenizer, line, max_length))
            ]
            validation_rows = [
                row for line in validation_raw if (row := encode_sft(tokenizer, line, max_length))
            ]
        except TemplateError as exc:
            raise JobFailed("invalid_chat_template", str(exc)) from exc
    skipped = len(train_raw) - len(train_rows)
    if not train_rows:
        raise JobFailed(
            "no_trainable_examples",
            "no training example has an assistant token to learn from "
            f"(all {len(train_raw)} weighted 0 or truncated at {max_length} tokens)",
        )
    if skipped:
        folder.event("warning", f"{skipped} examples had no trainable assistant token: skipped")
    train_set = Dataset.from_list(train_rows)
    validation_set = Dataset.from_list(validation_rows) if validation_rows else None

    common: dict[str, Any] = {
        "output_dir": str(folder.checkpoints_dir),
        "num_train_epochs": hyper["n_epochs"],
        "per_device_train_batch_size": hyper["batch_size"],
        "per_device_eval_batch_size": hyper["batch_size"],
        "gradient_accumulation_steps": settings["gradient_accumulation_steps"],
        "learning_rate": hyper["learning_rate"],
        "logging_steps": settings["logging_steps"],
        "logging_first_step": True,
        "save_strategy": "steps" if settings["save_steps"] else "epoch",
        "save_steps": settings["save_steps"] or 500,
        "save_total_limit": settings["save_total_limit"],
        "eval_strategy": "epoch" if validation_set is not None else "no",
        "bf16": precision == "bf16",
        "fp16": precision == "fp16",
        "gradient_checkpointing": checkpointing,
        "seed": hyper["seed"],
        "data_seed": hyper["seed"],
        "report_to": [],
        "disable_tqdm": True,
        "use_cpu": not cuda,
        "dataloader_num_workers": 0,
        "include_num_input_tokens_seen": True,
        "max_length": max_length,
    }
    callback = _callback(folder, TrainerCallback)
    trainer: Any
    if method == "dpo":
        from trl import DPOConfig, DPOTrainer

        trainer = DPOTrainer(
            model=model,
            args=DPOConfig(**common, beta=hyper["beta"]),
            train_dataset=train_set,
            eval_dataset=validation_set,
            processing_class=tokenizer,
            peft_config=peft_config,
            callbacks=[callback],
        )
    else:
        from trl import SFTConfig, SFTTrainer

        trainer = SFTTrainer(
            model=model,
            args=SFTConfig(**common),
            train_dataset=train_set,
            eval_dataset=validation_set,
            processing_class=tokenizer,
            peft_config=peft_config,
            callbacks=[callback],
        )
    last = folder.checkpoints()
    resume = str(last[-1][1]) if last else None
    if resume:
        folder.event("info", f"Resuming from the checkpoint at step {last[-1][0]}")
    folder.event(
        "info",
        f"Training {len(train_rows)} examples for {hyper['n_epochs']} epochs "
        f"({trainer.state.max_steps or 'unknown'} steps)",
    )
    result = trainer.train(resume_from_checkpoint=resume)
    tokens = int(getattr(trainer.state, "num_input_tokens_seen", 0) or 0)

    if not _first_process():
        return
    if lora:
        trainer.model.save_pretrained(folder.adapter_dir)
        tokenizer.save_pretrained(folder.adapter_dir)
        folder.event("info", "Saved the LoRA adapter")
        if settings["merge"]:
            merged = trainer.model.merge_and_unload()
            merged.save_pretrained(folder.merged_dir)
            tokenizer.save_pretrained(folder.merged_dir)
            folder.event("info", "Saved the merged model")
    else:
        trainer.model.save_pretrained(folder.model_dir)
        tokenizer.save_pretrained(folder.model_dir)
        folder.event("info", "Saved the model")
    folder.write_status(
        "succeeded",
        fine_tuned_model=spec["model_name"],
        trained_tokens=tokens,
        train_loss=getattr(result, "training_loss", None),
        error=None,
    )
    folder.event("info", f"The job has successfully completed: {spec['model_name']}")


def _callback(folder: JobFolder, base: type) -> Any:
    class Metrics(base):  # type: ignore[misc]
        """Metrics and checkpoint events into the folder, as the trainer logs them."""

        def __init__(self) -> None:
            self.last_time = time.monotonic()
            self.last_tokens = 0

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **_: Any) -> None:
            logs = logs or {}
            now, seen = time.monotonic(), int(getattr(state, "num_input_tokens_seen", 0) or 0)
            record: dict[str, Any] = {"step": state.global_step, "epoch": state.epoch}
            if "loss" in logs:
                elapsed = now - self.last_time
                record |= {
                    "loss": logs["loss"],
                    "learning_rate": logs.get("learning_rate"),
                    "tokens_per_second": (seen - self.last_tokens) / elapsed if elapsed else None,
                }
                self.last_time, self.last_tokens = now, seen
            elif "eval_loss" in logs:
                record["eval_loss"] = logs["eval_loss"]
            else:
                return
            record["total_steps"] = state.max_steps
            folder.append(folder.metrics_file, record)
            data = {"step": state.global_step, "total_steps": state.max_steps}
            if "loss" in record:
                data["train_loss"] = record["loss"]
                text = f"Step {state.global_step}/{state.max_steps}: training loss={record['loss']:.4f}"
            else:
                data["valid_loss"] = record["eval_loss"]
                text = f"Step {state.global_step}/{state.max_steps}: validation loss={record['eval_loss']:.4f}"
            folder.event("info", text, type="metrics", data=data)

        def on_save(self, args: Any, state: Any, control: Any, **_: Any) -> None:
            folder.event("info", f"Checkpoint saved at step {state.global_step}")

    return Metrics()


def run(folder: JobFolder) -> int:
    signal.signal(signal.SIGTERM, _on_sigterm(folder))
    folder.write_status("running", started_at=time.time(), error=None)
    folder.event("info", "Training started")
    try:
        train(folder)
    except JobFailed as exc:
        _fail(folder, exc.code, exc.message)
        return 1
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            _fail(folder, "disk_full", f"no space left on the device: {exc}")
        else:
            _fail(folder, "training_error", f"{type(exc).__name__}: {exc}")
        return 1
    except Exception as exc:  # noqa: BLE001 - any failure of training fails the job, with its reason
        name = type(exc).__name__
        code = "out_of_memory" if "OutOfMemory" in name else "training_error"
        _fail(folder, code, f"{name}: {exc}")
        return 1
    return 0


def _fail(folder: JobFolder, code: str, message: str) -> None:
    traceback.print_exc()
    try:
        folder.write_status("failed", error={"code": code, "message": message, "param": None})
        folder.event("error", f"The job failed: {message}")
    except OSError:
        pass  # a full disk: the backend sees a dead worker with no final status


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m finetune.training.local.worker JOB_DIR", file=sys.stderr)
        return 2
    path = Path(args[0]).resolve()
    return run(JobFolder(path) if _first_process() else _SilentFolder(path))


if __name__ == "__main__":
    sys.exit(main())
