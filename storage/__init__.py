"""Storage: SQLModel tables, engines and sessions, migrations, data-access functions.

Imports nothing of stillroom's; everything above it imports from here.
"""

from storage._captures import (
    Order,
    count_captures,
    delete_capture,
    get_capture,
    get_capture_by_completion_id,
    insert_captures,
    list_capture_summaries,
    list_stored_completions,
    update_capture_metadata,
)
from storage._engine import make_engine, normalise_url, session_scope
from storage._filters import CaptureFilter, FeedbackKind, ReviewStatus, filter_clauses
from storage._keys import (
    KEY_PREFIX,
    create_api_key,
    find_active_key,
    hash_secret,
    list_api_keys,
    revoke_api_key,
)
from storage._migrate import current_revision, head_revision, upgrade
from storage._models import (
    ApiKey,
    Capture,
    CaptureEdit,
    Dataset,
    DatasetExample,
    Feedback,
    utcnow,
)

__all__ = [
    "KEY_PREFIX",
    "ApiKey",
    "Capture",
    "CaptureEdit",
    "CaptureFilter",
    "Dataset",
    "DatasetExample",
    "Feedback",
    "FeedbackKind",
    "Order",
    "ReviewStatus",
    "count_captures",
    "create_api_key",
    "current_revision",
    "delete_capture",
    "filter_clauses",
    "find_active_key",
    "get_capture",
    "get_capture_by_completion_id",
    "hash_secret",
    "head_revision",
    "insert_captures",
    "list_api_keys",
    "list_capture_summaries",
    "list_stored_completions",
    "make_engine",
    "normalise_url",
    "revoke_api_key",
    "session_scope",
    "update_capture_metadata",
    "upgrade",
    "utcnow",
]
