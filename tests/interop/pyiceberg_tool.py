"""PyIceberg side of floe's interoperability tests: an independent Iceberg implementation reads the
tables floe writes and writes a table floe reads. Prints JSON on stdout.

usage (FLOE_PYICEBERG_CONFIG holds the config, never the command line: it carries secrets):
  pyiceberg_tool.py read  NAMESPACE TABLE [REF]   (rows, refs, and the schema's column types)
  pyiceberg_tool.py write NAMESPACE TABLE [LOCATION]
  pyiceberg_tool.py layout NAMESPACE TABLE [FILTER]

The config holds: catalog_name, uri (SQLAlchemy URL), warehouse, and optional s3 settings.
"""
import json
import sys
from pathlib import Path

import pyarrow as pa

# One translation of floe's config into a PyIceberg SqlCatalog: the benchmark peer's.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src" / "bench"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from peer import catalog, config  # noqa: E402
from rows import rows_json as rows_of  # noqa: E402


def rows_json(tbl):
    return rows_of(tbl.to_pylist())


def read(cfg, ns, name, ref=None):
    table = catalog(cfg).load_table((ns, name))
    if ref:
        snap = table.snapshot_by_name(ref)
        if snap is None:
            raise SystemExit(f"no ref {ref}")
        data = table.scan(snapshot_id=snap.snapshot_id).to_arrow()
    else:
        data = table.scan().to_arrow()
    snapshot = table.current_snapshot()
    order = table.sort_order()
    print(json.dumps({
        "rows": rows_json(data),
        "sort_order": {
            "order_id": order.order_id,
            "fields": [
                {
                    "column": table.schema().find_column_name(f.source_id),
                    "transform": str(f.transform),
                    "direction": f.direction.value,
                    "null_order": f.null_order.value,
                }
                for f in order.fields
            ],
        },
        "file_sort_order_ids": sorted(
            -1 if t.file.sort_order_id is None else t.file.sort_order_id for t in table.scan().plan_files()
        ),
        "current_snapshot": snapshot.snapshot_id if snapshot else None,
        "operation": snapshot.summary.operation.value if snapshot else None,
        "refs": sorted(table.refs().keys()),
        "schema": {f.name: str(f.field_type) for f in table.schema().fields},
    }))


def layout(cfg, ns, name, row_filter=None):
    """The table's partition specs, each live data file's spec id, and (with a filter) the rows and
    the number of data files PyIceberg's own planning reads for it."""
    table = catalog(cfg).load_table((ns, name))
    specs = {
        str(spec.spec_id): [[f.name, str(f.transform), f.source_id, f.field_id] for f in spec.fields]
        for spec in table.specs().values()
    }
    files = table.inspect.files().select(["file_path", "spec_id"]).to_pylist()
    out = {
        "specs": specs,
        "default_spec_id": table.spec().spec_id,
        "files": sorted([f["file_path"], f["spec_id"]] for f in files),
    }
    if row_filter:
        scan = table.scan(row_filter=row_filter)
        out["planned_files"] = len(list(scan.plan_files()))
        out["rows"] = rows_json(scan.to_arrow())
    print(json.dumps(out))


def write(cfg, ns, name, location=None):
    cat = catalog(cfg)
    try:
        cat.create_namespace(ns)
    except Exception:
        pass
    schema = pa.schema([
        pa.field("id", pa.int64(), nullable=False),
        pa.field("user_id", pa.string()),
        pa.field("amount", pa.float64()),
    ])
    table = cat.create_table((ns, name), schema=schema, location=location)
    table.append(pa.table({"id": [1, 2, 3], "user_id": ["a", "b", None], "amount": [1.5, 2.5, 3.5]}, schema=schema))
    table.append(pa.table({"id": [4], "user_id": ["d"], "amount": [4.5]}, schema=schema))
    table.delete("id == 2")
    print(json.dumps({"ok": True, "snapshots": len(table.metadata.snapshots)}))


if __name__ == "__main__":
    cmd, ns, name, *rest = sys.argv[1:]
    cfg = config()
    if cmd == "read":
        read(cfg, ns, name, rest[0] if rest else None)
    elif cmd == "layout":
        layout(cfg, ns, name, rest[0] if rest else None)
    elif cmd == "write":
        write(cfg, ns, name, rest[0] if rest else None)
    else:
        raise SystemExit(f"unknown command {cmd}")
