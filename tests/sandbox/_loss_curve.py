"""A training job's loss curve in the terminal, from its ``metrics`` events as the admin API
gives them (``GET /admin/jobs/{id}``): a sparkline that grows as the job trains, then a small
chart of the whole curve."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TextIO

BLOCKS = "▁▂▃▄▅▆▇█"


def training_losses(events: Iterable[Mapping[str, Any]]) -> list[tuple[int, int, float]]:
    """(step, total steps, training loss) of each metrics event, by step."""
    found: dict[int, tuple[int, int, float]] = {}
    for event in events:
        data = event.get("data") or {}
        if event.get("type") == "metrics" and isinstance(data.get("train_loss"), int | float):
            step = int(data["step"])
            found[step] = (step, int(data.get("total_steps") or 0), float(data["train_loss"]))
    return [found[step] for step in sorted(found)]


def validation_losses(events: Iterable[Mapping[str, Any]]) -> list[tuple[int, float]]:
    """(step, validation loss) of each end-of-epoch evaluation, by step."""
    found = {
        int(data["step"]): float(data["valid_loss"])
        for event in events
        if event.get("type") == "metrics"
        and isinstance(data := event.get("data") or {}, dict)
        and isinstance(data.get("valid_loss"), int | float)
    }
    return sorted(found.items())


def sparkline(values: Sequence[float]) -> str:
    """One block per value, the highest value a full block, the lowest the smallest."""
    if not values:
        return ""
    low, high = min(values), max(values)
    span = high - low or 1.0
    return "".join(BLOCKS[round((v - low) / span * (len(BLOCKS) - 1))] for v in values)


def chart(values: Sequence[float], *, rows: int = 6, width: int = 60) -> list[str]:
    """Columns as tall as the values (eighths of a row), the first and last value on the
    axis; more values than ``width`` are averaged in buckets."""
    if not values:
        return []
    columns = _buckets(values, width)
    high, low = max(columns), min(columns)
    # The lowest column keeps one eighth of a row, so that it shows.
    floor = low - (high - low) / (rows * 8) if high > low else low - 1.0
    heights = [(v - floor) / (high - floor) * rows for v in columns]
    lines = []
    for row in range(rows - 1, -1, -1):
        label = f"{high:7.3f}" if row == rows - 1 else f"{low:7.3f}" if row == 0 else ""
        cells = "".join(_cell(height - row) for height in heights)
        lines.append(f"{label:>7} │{cells}")
    lines.append(f"{'':>7} └{'─' * len(columns)}")
    return lines


def _cell(filled: float) -> str:
    """A cell filled this much (0 to 1, or past either end), in eighths."""
    eighths = round(min(max(filled, 0.0), 1.0) * len(BLOCKS))
    return BLOCKS[eighths - 1] if eighths else " "


def _buckets(values: Sequence[float], width: int) -> list[float]:
    if len(values) <= width:
        return list(values)
    size = len(values) / width
    return [
        sum(part) / len(part)
        for index in range(width)
        if (part := values[round(index * size) : round((index + 1) * size)])
    ]


class LiveCurve:
    """Prints the curve as points arrive: on a terminal one line redrawn in place, elsewhere a
    line for each batch of new points."""

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out or sys.stdout
        self.points: list[tuple[int, int, float]] = []
        self.live = self.out.isatty()

    def update(self, points: Sequence[tuple[int, int, float]]) -> None:
        if len(points) <= len(self.points):
            return
        self.points = list(points)
        step, total, loss = points[-1]
        losses = [loss for _, _, loss in points]
        line = f"  step {step:>3}/{total:<3} loss {loss:7.4f}  {sparkline(losses[-60:])}"
        if self.live:
            self.out.write("\r\033[K" + line)
        else:
            self.out.write(line + "\n")
        self.out.flush()

    def finish(self) -> None:
        if self.live and self.points:
            self.out.write("\n")
            self.out.flush()
