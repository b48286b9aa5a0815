"""Turn a JSON text column into typed DataFrame columns, in DuckDB, parsing each row once."""

from __future__ import annotations

import json
from typing import Any

import duckdb
import orjson
import pandas as pd

__all__ = ["flatten_json", "query"]

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


def _schema(
    structure: Any, path: tuple[str, ...], leaves: list[tuple[tuple[str, ...], str]]
) -> Any:
    """Rewrite a json_group_structure into a from_json schema; collect its leaves."""
    if isinstance(structure, dict) and structure:
        return {k: _schema(v, (*path, k), leaves) for k, v in structure.items()}
    kind = _SCALARS.get(structure, "JSON") if isinstance(structure, str) else "JSON"
    leaves.append((path, kind))
    return kind


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


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
    rows = con.execute(
        f"SELECT json_group_structure({_ident(column)}::JSON) FROM {table} WHERE {where}"
    ).fetchall()
    structure = json.loads(rows[0][0]) if rows and rows[0][0] else {}
    leaves: list[tuple[tuple[str, ...], str]] = []
    schema = _schema(structure, (), leaves) if isinstance(structure, dict) and structure else {}
    selects = [_ident(c) for c in keep]
    if schema:
        parsed = f"from_json({_ident(column)}::JSON, {_quote(json.dumps(schema))})"
        for path, _ in leaves:
            access = "".join(f"[{_quote(p)}]" for p in path)
            selects.append(f"_s{access} AS {_ident(prefix + '.'.join(path))}")
        source = f"(SELECT *, {parsed} AS _s FROM {table} WHERE {where})"
    else:
        source = f"(SELECT * FROM {table} WHERE {where})"
    order = f" ORDER BY {order_by}" if order_by else ""
    frame = query(con, f"SELECT {', '.join(selects)} FROM {source}{order}")
    for path, kind in leaves:
        if kind == "JSON":
            name = prefix + ".".join(path)
            frame[name] = [orjson.loads(v) if isinstance(v, str) else None for v in frame[name]]
    return frame


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
