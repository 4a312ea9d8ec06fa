"""A tiny Qwen2-shaped model, its tokenizer and a LoRA adapter, built on the spot: no download.

Runs where torch, transformers, tokenizers and peft are installed (``.vllm-venv``); the test
process itself never imports them. ``python -m tests.tiny_model JOB_ROOT JOB_ID...`` writes:
  JOB_ROOT/base/                  the random-initialised base model with its tokenizer
  JOB_ROOT/JOB_ID/adapter/        a PEFT LoRA adapter with random A and B (it changes outputs)
  JOB_ROOT/JOB_ID/merged/         the base with the adapter merged in
  JOB_ROOT/expected.json          greedy continuations (token ids) of PROMPT by the base and the merged model

One attention head of 64: vLLM's CPU attention wants a head dimension of 64 or more.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

PROMPT = "<|im_start|>user\nWhere is the tea kept?<|im_end|>\n<|im_start|>assistant\n"
NEW_TOKENS = 12
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
_CORPUS = [
    "The stillroom keeps tea, jam, cordials and the household's remedies.",
    "Where is the tea kept? On the second shelf, beside the honey.",
    "A student learns the teacher's answers; the alias serves whichever is better.",
    "Distil the answers, train the adapter, load it, and route the traffic.",
    "user assistant system tool: 0123456789 {}[]()<>,.;:!?'\"-_=+*/\\",
]


def build_tokenizer(folder: Path) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(_CORPUS * 20, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        bos_token=None,
        additional_special_tokens=["<|im_start|>"],
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(folder)
    return fast


def build_base(folder: Path) -> None:
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    tokenizer = build_tokenizer(folder)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=1,
        num_key_value_heads=1,
        head_dim=64,
        max_position_embeddings=512,
        tie_word_embeddings=False,
        eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        bos_token_id=None,
        torch_dtype="float32",
    )
    model = Qwen2ForCausalLM(config)
    model.generation_config.eos_token_id = config.eos_token_id
    model.save_pretrained(folder)


def build_adapter(base: Path, job: Path, seed: int) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    config = LoraConfig(
        r=8,
        lora_alpha=16,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
        init_lora_weights=False,
        task_type="CAUSAL_LM",
    )
    peft_model = get_peft_model(model, config)
    # Random A and B at PEFT's scale change the logits only a little; larger B makes the
    # student's greedy answer visibly differ from its base's.
    with torch.no_grad():
        for name, parameter in peft_model.named_parameters():
            if "lora_B" in name:
                parameter.mul_(50.0)
    peft_model.save_pretrained(job / "adapter")
    merged = peft_model.merge_and_unload()
    merged.save_pretrained(job / "merged")
    AutoTokenizer.from_pretrained(base).save_pretrained(job / "merged")


def greedy(folder: Path) -> list[int]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    ids = tokenizer(PROMPT, return_tensors="pt").input_ids
    with torch.no_grad():
        out = model.generate(
            ids, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, do_sample=False
        )
    tokens: list[int] = out[0, ids.shape[1] :].tolist()
    return tokens


def main(root: Path, job_ids: list[str]) -> None:
    base = root / "base"
    build_base(base)
    expected: dict[str, list[int]] = {"base": greedy(base)}
    for seed, job_id in enumerate(job_ids, start=1):
        build_adapter(base, root / job_id, seed)
        expected[job_id] = greedy(root / job_id / "merged")
    (root / "expected.json").write_text(json.dumps(expected))


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2:])
