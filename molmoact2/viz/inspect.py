"""Read an `.rrd` back into a plain summary: which entities, on which timelines, how many values.

Used by tests and notebooks to check a recording without a viewer (Rerun 0.39: `rerun.chunk.RrdReader`).
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any


@dataclass
class EntitySummary:
    rows: int = 0  # temporal rows, including Clear rows
    static_rows: int = 0
    timelines: set[str] = field(default_factory=set)
    components: dict[str, int] = field(default_factory=dict)  # "Archetype:field" -> non-null temporal rows
    times: dict[str, list[int]] = field(default_factory=dict)  # timeline -> raw values of temporal rows


def summarize_rrd(path: str | os.PathLike) -> dict[str, Any]:
    """Return {"recordings": n, "blueprints": n, "entities": {entity_path: EntitySummary}} for the
    first recording in `path`. Entity paths are as Rerun prints them ("/cameras/front/rgb")."""
    from rerun.chunk import RrdReader

    if not os.path.isfile(path):
        raise FileNotFoundError(f"summarize_rrd: expected an .rrd file at {path}, not found")
    reader = RrdReader(path)
    entities: dict[str, EntitySummary] = defaultdict(EntitySummary)
    for chunk in reader.stream():
        summary = entities[chunk.entity_path]
        if chunk.is_static:
            summary.static_rows += chunk.num_rows
            continue
        summary.rows += chunk.num_rows
        summary.timelines.update(chunk.timeline_names)
        batch = chunk.to_record_batch()
        for name in batch.schema.names:
            column = batch.column(name)
            if name in chunk.timeline_names:
                summary.times.setdefault(name, []).extend(_time_values(column))
            elif ":" in name:
                summary.components[name] = summary.components.get(name, 0) + len(column) - column.null_count
    return {"recordings": len(reader.recordings()), "blueprints": len(reader.blueprints()), "entities": dict(entities)}


def _time_values(column: Any) -> list[int]:
    import pyarrow as pa

    # Sequence timelines are int64; duration timelines are duration[ns]: compare them as raw ints.
    if pa.types.is_duration(column.type) or pa.types.is_timestamp(column.type):
        column = column.cast(pa.int64())
    return [int(v) for v in column.to_pylist()]


def blueprint_views(path: str | os.PathLike) -> list[dict[str, str]]:
    """The views of the first blueprint stored in `path`: [{"class": "2D", "name": ..., "origin": ...}]."""
    from rerun.chunk import RrdReader

    reader = RrdReader(path)
    if not reader.blueprints():
        return []
    views = []
    for chunk in reader.stream(store=reader.blueprints()[0]):
        batch = chunk.to_record_batch()
        if "ViewBlueprint:class_identifier" not in batch.schema.names:
            continue
        row = {}
        for key, column in (
            ("class", "ViewBlueprint:class_identifier"),
            ("name", "ViewBlueprint:display_name"),
            ("origin", "ViewBlueprint:space_origin"),
        ):
            values = batch.column(column).to_pylist() if column in batch.schema.names else [None]
            value = values[-1]
            row[key] = value[0] if isinstance(value, list) and value else value
        views.append(row)
    return views
