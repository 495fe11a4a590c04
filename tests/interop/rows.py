"""How the interop tools print rows: one JSON object a row, sorted, values in one text form whatever
the reader (PyIceberg or DuckDB), so tests compare them with floe's rows."""
import json
from decimal import Decimal
from uuid import UUID


def value_json(v):
    """Instants as ISO-8601 text, decimals as their exact text, binary as hex, uuids as their
    canonical text, everything else as it is."""
    if isinstance(v, UUID):
        return str(v)
    if hasattr(v, "isoformat"):
        return v.isoformat()
    if isinstance(v, Decimal):
        return str(v)
    if isinstance(v, (bytes, bytearray)):
        return v.hex()
    return v


def rows_json(rows):
    """`rows`: dicts of column name to value."""
    out = [{k: value_json(v) for k, v in row.items()} for row in rows]
    out.sort(key=lambda r: json.dumps(r, sort_keys=True))
    return out
