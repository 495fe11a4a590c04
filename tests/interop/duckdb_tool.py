"""DuckDB side of floe's interoperability tests: DuckDB 1.4.4's own iceberg extension (an independent
Iceberg reader, with its own handling of position and equality deletes) reads a table floe wrote, by
its metadata file. The extensions load from the pip packages' files: no network. Prints JSON.

usage (FLOE_DUCKDB_S3 holds S3 settings as JSON, never the command line: they carry secrets):
  duckdb_tool.py scan METADATA_LOCATION
"""
import json
import os
import sys
from pathlib import Path

# One loader of DuckDB's extensions (offline) and its S3 secret: the benchmark peer's.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src" / "bench"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from peer import duckdb_connect  # noqa: E402
from rows import rows_json  # noqa: E402


def connect():
    s3 = os.environ.get("FLOE_DUCKDB_S3")
    if not s3:
        return duckdb_connect()
    s3 = json.loads(s3)
    return duckdb_connect({
        "endpoint": s3["endpoint"],
        "access_key_id": s3["key_id"],
        "secret_access_key": s3["secret"],
        "region": s3.get("region", "garage"),
    })


def scan(location):
    con = connect()
    # Through Arrow, as PyIceberg's rows are, so that values print alike (and zoned timestamps need
    # no pytz).
    rows = con.execute("SELECT * FROM iceberg_scan(?)", [location]).fetch_arrow_table().to_pylist()
    print(json.dumps({"rows": rows_json(rows)}))


if __name__ == "__main__":
    cmd, *rest = sys.argv[1:]
    if cmd == "scan":
        scan(rest[0])
    else:
        raise SystemExit(f"unknown command {cmd}")
