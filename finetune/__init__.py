"""The loop's domain logic: curation, datasets and export, validation, training backends,
evaluation, promotion and cycles. Imports ``storage``, never ``proxy``.
"""

from finetune._prompt import normalise_text, prompt_hash, prompt_key

__all__ = ["normalise_text", "prompt_hash", "prompt_key"]
