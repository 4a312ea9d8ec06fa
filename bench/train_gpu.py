"""``python -m bench.train_gpu``: how fast the local backend's worker trains, on this machine.

For a base model given by folder (``--model``) or by a known architecture (``--config``,
random-initialised from the shape written below: no download), and an export (``--data``, or
synthetic chat examples), it runs the worker's own SFT path on a job folder and prints a JSON
summary: training tokens/s (between logged steps, the first left out; and over the whole run,
setup included), peak GPU memory, wall time, first and last loss; then the saved student
(the merged model, or the fully tuned one) answers the first example's prompt, greedily, and
the summary gives that answer and its decoding tokens/s. On a machine without a GPU, use
``--config tiny`` for a smoke check.

    python -m bench.train_gpu --config qwen2.5-0.5b --examples 512 --batch-size 8
    python -m bench.train_gpu --model /models/Qwen2.5-1.5B-Instruct --data export.jsonl
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from finetune.training.local import JobFolder, LocalTrainingConfig, model_name
from tests.tinymodel import build_tiny_model, chat_examples, sentence

# Published shapes (config.json of the Qwen2.5 releases); weights random-initialised here.
CONFIGS: dict[str, dict[str, Any]] = {
    "qwen2.5-0.5b": {
        "hidden_size": 896,
        "intermediate_size": 4864,
        "num_hidden_layers": 24,
        "num_attention_heads": 14,
        "num_key_value_heads": 2,
        "vocab_size": 151936,
        "max_position_embeddings": 32768,
        "rope_theta": 1000000.0,
        "tie_word_embeddings": True,
    },
    "qwen2.5-1.5b": {
        "hidden_size": 1536,
        "intermediate_size": 8960,
        "num_hidden_layers": 28,
        "num_attention_heads": 12,
        "num_key_value_heads": 2,
        "vocab_size": 151936,
        "max_position_embeddings": 32768,
        "rope_theta": 1000000.0,
        "tie_word_embeddings": True,
    },
    "qwen2.5-7b": {
        "hidden_size": 3584,
        "intermediate_size": 18944,
        "num_hidden_layers": 28,
        "num_attention_heads": 28,
        "num_key_value_heads": 4,
        "vocab_size": 152064,
        "max_position_embeddings": 32768,
        "rope_theta": 1000000.0,
        "tie_word_embeddings": False,
    },
}


def build_from_config(name: str, folder: Path) -> Path:
    """A random-initialised model of a known shape, with the tiny model's tokenizer (its ids
    are valid in any larger vocabulary: tokens/s does not depend on which text they encode)."""
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    tiny = build_tiny_model(folder / "tokenizer-source")
    tokenizer = AutoTokenizer.from_pretrained(tiny)
    dtype = torch.bfloat16 if torch.cuda.is_available() else torch.float32
    config = Qwen2Config(
        **CONFIGS[name],
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = Qwen2ForCausalLM(config).to(dtype)
    target = folder / name
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    del model
    return target


def synthetic(count: int, sentences: int, seed: int = 3) -> list[dict[str, Any]]:
    """Chat examples (some with tools and ``weight: 0`` turns), each answer ``sentences`` long."""
    rng = random.Random(seed)
    examples = chat_examples(count, seed=seed)
    for example in examples:
        answer = example["messages"][-1]
        answer["content"] = " ".join(sentence(rng)[1] for _ in range(sentences))
    return examples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--model", type=Path, help="a model folder (config.json, weights)")
    source.add_argument("--config", choices=["tiny", *CONFIGS], default="tiny")
    parser.add_argument("--data", type=Path, help="an SFT export (JSONL); default synthetic")
    parser.add_argument("--examples", type=int, default=64)
    parser.add_argument("--sentences", type=int, default=4, help="per synthetic answer")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--learning-rate", type=float, help="default: the local backend's")
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument("--tuning", choices=["lora", "full"], default="lora")
    parser.add_argument("--lora-rank", type=int, default=16)
    parser.add_argument("--precision", choices=["auto", "bf16", "fp16", "fp32"], default="auto")
    parser.add_argument("--gradient-checkpointing", choices=["auto", "on", "off"], default="auto")
    parser.add_argument("--keep", type=Path, help="keep the job folder here")
    parser.add_argument("--answer-tokens", type=int, default=64, help="0: no answer step")
    args = parser.parse_args(argv)

    started = time.monotonic()
    import torch

    from finetune.training.local import worker

    work = Path(tempfile.mkdtemp(prefix="train-bench-"))
    if args.model:
        base, label = args.model.resolve(), args.model.name
    elif args.config == "tiny":
        base, label = build_tiny_model(work / "tiny"), "tiny"
    else:
        base, label = build_from_config(args.config, work), args.config
    built = time.monotonic()
    rows = (
        [orjson.loads(line) for line in args.data.read_bytes().splitlines() if line.strip()]
        if args.data
        else synthetic(args.examples, args.sentences)
    )
    checkpointing = {"auto": None, "on": True, "off": False}[args.gradient_checkpointing]
    settings = LocalTrainingConfig(
        root=work,
        tuning=args.tuning,
        lora_rank=args.lora_rank,
        lora_alpha=2 * args.lora_rank,
        max_length=args.max_length,
        precision=args.precision,
        gradient_checkpointing=checkpointing,
        logging_steps=1,
        save_total_limit=1,
        merge=args.tuning == "lora" and args.answer_tokens > 0,
    )
    folder = JobFolder(args.keep.resolve() if args.keep else work / "ftjob-bench")
    folder.path.mkdir(parents=True, exist_ok=True)
    folder.train_file.write_bytes(b"".join(orjson.dumps(row) + b"\n" for row in rows))
    method = "supervised"
    folder.write_json(
        folder.spec_file,
        {
            "job_id": folder.job_id,
            "method": method,
            "base_model": label,
            "base_model_path": str(base),
            "model_name": model_name(label, "bench", folder.job_id),
            "hyperparameters": {
                "n_epochs": args.epochs,
                "batch_size": args.batch_size,
                "learning_rate": args.learning_rate or settings.base_learning_rate(method),
                "beta": 0.1,
                "seed": 42,
            },
            "settings": settings.model_dump(mode="json"),
        },
    )
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    trained = time.monotonic()
    worker.train(folder)
    done = time.monotonic()
    metrics = [m for m in folder.metrics() if "loss" in m]
    steady = [m["tokens_per_second"] for m in metrics[1:] if m.get("tokens_per_second")]
    status = folder.status()
    summary = {
        "model": label,
        "device": torch.cuda.get_device_name(0) if cuda else "cpu",
        "torch": torch.__version__,
        "tuning": args.tuning,
        "examples": len(rows),
        "steps": len(metrics),
        "batch_size": args.batch_size,
        "trained_tokens": status.get("trained_tokens"),
        "tokens_per_second": round(sum(steady) / len(steady), 1) if steady else None,
        "overall_tokens_per_second": round(
            (status.get("trained_tokens") or 0) / (done - trained), 1
        ),
        "train_seconds": round(done - trained, 2),
        "build_seconds": round(built - started, 2),
        "wall_seconds": round(done - started, 2),
        "peak_gpu_memory_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None,
        "first_loss": metrics[0]["loss"] if metrics else None,
        "last_loss": metrics[-1]["loss"] if metrics else None,
        "job_folder": str(folder.path),
    }
    if args.answer_tokens:
        student = folder.merged_dir if args.tuning == "lora" else folder.model_dir
        asked = next((r for r in rows if r["messages"][-2]["role"] == "user"), rows[0])
        summary["expected"] = asked["messages"][-1]["content"]
        summary.update(answer(student, asked["messages"], args.answer_tokens))
    print(json.dumps(summary, indent=2))
    return 0


def answer(student: Path, messages: list[dict[str, Any]], tokens: int) -> dict[str, Any]:
    """The saved student's greedy answer to a prompt (the messages before the last assistant
    turn), loaded from its folder as a server would, and its decoding rate."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    prompt = messages[: max(i for i, m in enumerate(messages) if m["role"] == "assistant")]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    tokenizer = AutoTokenizer.from_pretrained(student)
    model = AutoModelForCausalLM.from_pretrained(student, dtype="auto", use_kernels=False)
    model = model.to(device).eval()
    encoded = tokenizer.apply_chat_template(
        prompt, add_generation_prompt=True, return_tensors="pt", return_dict=True
    ).to(device)
    started = time.monotonic()
    with torch.no_grad():
        output = model.generate(
            **encoded, max_new_tokens=tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id
        )
    elapsed = time.monotonic() - started
    new = output[0, encoded["input_ids"].shape[1] :]
    return {
        "answer_prompt": prompt[-1]["content"],
        "answer": tokenizer.decode(new, skip_special_tokens=True),
        "answer_tokens": int(new.shape[0]),
        "answer_tokens_per_second": round(int(new.shape[0]) / elapsed, 1),
    }


if __name__ == "__main__":
    sys.exit(main())
