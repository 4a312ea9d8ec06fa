"""The loop's domain logic: curation, datasets and export, validation, training backends,
evaluation, promotion and cycles. Imports ``storage``, never ``proxy``.
"""

__all__: list[str] = []
