"""Datasets: frozen, versioned snapshots of curated captures, threaded into conversations and
split by a stable prompt hash; their export as SFT and DPO JSONL, and the validator with its
token counts that gates every upload.
"""

from finetune.datasets._datasets import (
    DuplicateGroup,
    create_dataset,
    delete_dataset,
    get_dataset,
    list_datasets,
    list_duplicates,
)
from finetune.datasets._export import (
    PREFERENCE_KEY,
    DatasetDiff,
    ExportPage,
    Redact,
    diff_datasets,
    dpo_record,
    export_lines,
    open_export,
    sft_example,
)
from finetune.datasets._input import (
    DUPLICATE_POLICIES,
    EXPORT_FORMATS,
    EXPORT_SPLITS,
    SPLITS,
    DatasetConflict,
    DatasetError,
    DatasetNotFound,
    DuplicatePolicy,
    ExportFormat,
    InvalidDatasetRequest,
    SplitRatios,
)
from finetune.datasets._prompt import (
    normalise_text,
    prompt_hash,
    prompt_key,
)
from finetune.datasets._response_threads import history_of, thread_request
from finetune.datasets._responses import (
    finish_reason_of,
    items_as_messages,
    request_as_chat,
    response_as_completion,
    tools_as_chat,
    usage_as_chat,
)
from finetune.datasets._tokens import (
    EncodingUnavailable,
    TokenCounter,
    counter_for,
    encoding_name_for,
    load_encoding,
)
from finetune.datasets._validate import (
    MAX_FILE_BYTES,
    MIN_EXAMPLES,
    ValidationOptions,
    split_lines,
    validate_dataset,
    validate_file,
    validate_jsonl,
)
from finetune.datasets._validate_report import (
    Distribution,
    FileFormat,
    Issue,
    ValidationReport,
)

__all__ = [
    "DUPLICATE_POLICIES",
    "EXPORT_FORMATS",
    "EXPORT_SPLITS",
    "MAX_FILE_BYTES",
    "MIN_EXAMPLES",
    "PREFERENCE_KEY",
    "SPLITS",
    "DatasetConflict",
    "DatasetDiff",
    "DatasetError",
    "DatasetNotFound",
    "Distribution",
    "DuplicateGroup",
    "DuplicatePolicy",
    "EncodingUnavailable",
    "ExportFormat",
    "ExportPage",
    "FileFormat",
    "InvalidDatasetRequest",
    "Issue",
    "Redact",
    "SplitRatios",
    "TokenCounter",
    "ValidationOptions",
    "ValidationReport",
    "counter_for",
    "create_dataset",
    "delete_dataset",
    "diff_datasets",
    "dpo_record",
    "encoding_name_for",
    "export_lines",
    "finish_reason_of",
    "get_dataset",
    "history_of",
    "items_as_messages",
    "list_datasets",
    "list_duplicates",
    "load_encoding",
    "normalise_text",
    "open_export",
    "prompt_hash",
    "prompt_key",
    "request_as_chat",
    "response_as_completion",
    "sft_example",
    "split_lines",
    "thread_request",
    "tools_as_chat",
    "usage_as_chat",
    "validate_dataset",
    "validate_file",
    "validate_jsonl",
]
