"""Turn a JSON text column into typed DataFrame columns, in DuckDB, parsing each row once.

Payloads are whatever applications put in them, so nothing about their keys is
assumed: keys DuckDB cannot hold in a struct (an empty key, two keys equal but
for case) are read by JSON pointer instead, and keys that name the same dotted
column (``user.id`` on one row, ``user: {id: ...}`` on another) share one column.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import duckdb
import numpy as np
import orjson
import pandas as pd

__all__ = ["create_flat_table", "flatten_json", "query"]

_SCALARS = {
    "VARCHAR": "VARCHAR",
    "BOOLEAN": "BOOLEAN",
    "DOUBLE": "DOUBLE",
    "UBIGINT": "BIGINT",
    "BIGINT": "BIGINT",
}


def query(
    con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None
) -> pd.DataFrame:
    """Run ``sql`` and return the result as a DataFrame, through Arrow (fast strings)."""
    relation = con.sql(sql, params=params or None)
    if relation is None:
        raise ValueError("query() needs a statement that returns rows")
    frame: pd.DataFrame = relation.to_arrow_table().to_pandas()
    for column in frame.columns:
        if isinstance(frame[column].dtype, pd.DatetimeTZDtype):
            frame[column] = frame[column].dt.tz_convert("UTC")
    return frame


class _Leaf:
    """One output column: its key path, SQL type, and how to read it."""

    def __init__(self, path: tuple[str, ...], kind: str, pointer: bool) -> None:
        self.path = path
        self.kind = kind
        self.pointer = pointer  # read with a JSON pointer, outside the parsed struct


def _pointer(path: tuple[str, ...]) -> str:
    return "".join("/" + p.replace("~", "~0").replace("/", "~1") for p in path)


def _schema(structure: Any, path: tuple[str, ...], leaves: list[_Leaf]) -> Any:
    """Rewrite a json_group_structure into a from_json schema; collect its leaves.

    Returns ``None`` when nothing under ``path`` can be part of the struct.
    """
    if isinstance(structure, dict) and structure:
        lowered = [k.lower() for k in structure]
        schema: dict[str, Any] = {}
        for key, value in structure.items():
            if not key or lowered.count(key.lower()) > 1:
                leaves.append(_Leaf((*path, key), "JSON", pointer=True))
                continue
            sub = _schema(value, (*path, key), leaves)
            if sub is not None:
                schema[key] = sub
        return schema or None
    kind = _SCALARS.get(structure, "JSON") if isinstance(structure, str) else "JSON"
    leaves.append(_Leaf(path, kind, pointer=False))
    return kind


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _columns(
    leaves: list[_Leaf], column: str, prefix: str, taken: set[str]
) -> list[tuple[str, str, str]]:
    """(name, SQL, kind) per output column; leaves with one dotted name are merged."""
    by_name: dict[str, list[_Leaf]] = {}
    for leaf in leaves:
        name = prefix + ".".join(leaf.path)
        if name in taken:  # a payload field named like an envelope column
            name = f"{column}.{name}"
        by_name.setdefault(name, []).append(leaf)

    def access(leaf: _Leaf) -> str:
        if leaf.pointer:
            return f"json_extract({_ident(column)}, {_quote(_pointer(leaf.path))})"
        return "_s" + "".join(f"[{_quote(p)}]" for p in leaf.path)

    out = []
    for name, group in by_name.items():
        if len(group) == 1:
            out.append((name, access(group[0]), group[0].kind))
        else:
            parts = [
                access(leaf) if leaf.kind == "JSON" else f"to_json({access(leaf)})"
                for leaf in group
            ]
            out.append((name, f"coalesce({', '.join(parts)})", "JSON"))
    return out


def _plan(
    con: duckdb.DuckDBPyConnection,
    table: str,
    column: str,
    keep: list[str],
    where: str,
    prefix: str,
) -> tuple[list[tuple[str, str, str]], str]:
    """The output columns (name, SQL, kind), ``keep`` first, and the FROM clause."""
    rows = con.execute(
        f"SELECT json_group_structure({_ident(column)}::JSON) FROM {table} WHERE {where}"
    ).fetchall()
    structure = json.loads(rows[0][0]) if rows and rows[0][0] else {}
    leaves: list[_Leaf] = []
    objects = isinstance(structure, dict) and bool(structure)
    schema = _schema(structure, (), leaves) if objects else None
    columns = [(c, _ident(c), "KEEP") for c in keep]
    # DuckDB's json_group_structure lists keys in no fixed order (parallel scans): sort them.
    columns += sorted(_columns(leaves, column, prefix, set(keep)), key=lambda c: c[0])
    if isinstance(schema, dict):
        parsed = f"from_json({_ident(column)}::JSON, {_quote(json.dumps(schema))})"
        return columns, f"(SELECT *, {parsed} AS _s FROM {table} WHERE {where})"
    return columns, f"(SELECT * FROM {table} WHERE {where})"


def flatten_json(
    con: duckdb.DuckDBPyConnection,
    table: str,
    column: str,
    *,
    keep: list[str],
    where: str = "TRUE",
    prefix: str = "",
    order_by: str | None = None,
) -> pd.DataFrame:
    """Select ``keep`` columns of ``table`` plus ``column``'s JSON objects flattened.

    Nested objects become dotted names (``usage.input_tokens``), prefixed with
    ``prefix``. A field whose type differs between rows, and arrays, come back as
    Python values parsed from their JSON; everything else keeps its SQL type.
    """
    columns, source = _plan(con, table, column, keep, where, prefix)
    selects = [f"{sql} AS _c{i}" for i, (_, sql, _) in enumerate(columns)]
    order = f" ORDER BY {order_by}" if order_by else ""
    frame = query(con, f"SELECT {', '.join(selects)} FROM {source}{order}")
    frame.columns = pd.Index([name for name, _, _ in columns])
    load: Callable[[Any], Any] = lambda v: orjson.loads(v) if isinstance(v, str) else None  # noqa: E731
    for position, (_, _, kind) in enumerate(columns):
        if kind == "JSON":
            values = np.empty(len(frame), dtype=object)  # objects, never a float column
            for i, v in enumerate(frame.iloc[:, position]):
                values[i] = load(v)
            frame.isetitem(position, values)
    return frame


def create_flat_table(
    con: duckdb.DuckDBPyConnection,
    name: str,
    table: str,
    column: str,
    *,
    keep: list[str],
    prefix: str = "",
    order_by: str | None = None,
) -> None:
    """Like :func:`flatten_json`, into the temporary table ``name`` (for SQL over it).

    Column names DuckDB would take as equal (they differ only in case) get a
    ``#2``, ``#3`` suffix; JSON leaves stay JSON.
    """
    columns, source = _plan(con, table, column, keep, "TRUE", prefix)
    seen: dict[str, int] = {}
    selects = []
    for col, sql, _ in columns:
        count = seen.get(col.lower(), 0) + 1
        seen[col.lower()] = count
        selects.append(f"{sql} AS {_ident(col if count == 1 else f'{col}#{count}')}")
    order = f" ORDER BY {order_by}" if order_by else ""
    con.execute(
        f"CREATE TEMP TABLE {_ident(name)} AS SELECT {', '.join(selects)} FROM {source}{order}"
    )
