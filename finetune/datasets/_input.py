"""What dataset requests accept, and the errors for what they refuse.

    DatasetError                  any refusal; ``param`` names the offending input
    ├── InvalidDatasetRequest     bad name, split ratios, duplicate policy, split or format
    ├── DatasetNotFound           no dataset with that id
    └── DatasetConflict           another build took the same name and version first

Every check runs before anything is written, so a refused request changes nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, get_args

DuplicatePolicy = Literal["latest_approved", "best_rated"]
DUPLICATE_POLICIES: tuple[str, ...] = get_args(DuplicatePolicy)
ExportFormat = Literal["sft", "dpo"]
EXPORT_FORMATS: tuple[str, ...] = get_args(ExportFormat)
SPLITS = ("train", "validation", "test")
EXPORT_SPLITS = (*SPLITS, "all")

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")


class DatasetError(Exception):
    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


class InvalidDatasetRequest(DatasetError):
    pass


class DatasetNotFound(DatasetError):
    pass


class DatasetConflict(DatasetError):
    pass


@dataclass(frozen=True, slots=True)
class SplitRatios:
    """Shares of train / validation / test; each from 0 to 1, together 1."""

    train: float = 0.8
    validation: float = 0.1
    test: float = 0.1

    def __post_init__(self) -> None:
        values = (self.train, self.validation, self.test)
        if any(not 0 <= v <= 1 for v in values) or abs(sum(values) - 1) > 1e-9:
            raise InvalidDatasetRequest(
                "Split ratios must each be from 0 to 1 and add up to 1, got "
                f"{', '.join(f'{v:g}' for v in values)}.",
                param="split",
                code="invalid_split",
            )

    @classmethod
    def parse(cls, text: str) -> SplitRatios:
        """From ``"0.8,0.1,0.1"`` (train, validation, test)."""
        try:
            train, validation, test = (float(part) for part in text.split(","))
        except ValueError:
            raise InvalidDatasetRequest(
                f"Split must be three numbers like 0.8,0.1,0.1, got '{text}'.",
                param="split",
                code="invalid_split",
            ) from None
        return cls(train, validation, test)

    def as_dict(self) -> dict[str, float]:
        return {"train": self.train, "validation": self.validation, "test": self.test}

    def side(self, key_hash: str) -> str:
        """The split of a prompt: its hash mapped to [0, 1) against the cumulative ratios.

        It depends on nothing but the hash and these ratios, so a prompt stays on its side in
        every version built with the same ratios, whatever else the selection holds.
        """
        position = int(key_hash[:16], 16) / 2**64
        if position < self.train:
            return "train"
        return "validation" if position < self.train + self.validation else "test"


def check_name(name: str) -> None:
    if not _NAME.match(name):
        raise InvalidDatasetRequest(
            "A dataset name is 1-200 letters, digits, '.', '_' or '-', starting with a letter "
            f"or digit; got '{name}'.",
            param="name",
            code="invalid_name",
        )


def check_policy(policy: str) -> None:
    if policy not in DUPLICATE_POLICIES:
        raise InvalidDatasetRequest(
            f"Duplicate policy must be one of {', '.join(DUPLICATE_POLICIES)}, got '{policy}'.",
            param="dedupe",
            code="invalid_dedupe",
        )


def check_export(split: str, fmt: str) -> None:
    if split not in EXPORT_SPLITS:
        raise InvalidDatasetRequest(
            f"Split must be one of {', '.join(EXPORT_SPLITS)}, got '{split}'.",
            param="split",
            code="invalid_split",
        )
    if fmt not in EXPORT_FORMATS:
        raise InvalidDatasetRequest(
            f"Format must be one of {', '.join(EXPORT_FORMATS)}, got '{fmt}'.",
            param="format",
            code="invalid_format",
        )


def not_found(dataset_id: str) -> DatasetNotFound:
    return DatasetNotFound(f"No dataset '{dataset_id}'.", param="id", code="not_found")
