"""DuckDB side of floe's interoperability tests: DuckDB 1.4.4's own iceberg extension (an independent
Iceberg reader, with its own handling of position and equality deletes) reads a table floe wrote, by
its metadata file. The extensions load from the pip packages' files: no network. Prints JSON.

usage (FLOE_DUCKDB_S3 holds S3 settings as JSON, never the command line: they carry secrets):
  duckdb_tool.py scan METADATA_LOCATION
"""
import glob
import json
import os
import site
import sys
from pathlib import Path

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rows import rows_json  # noqa: E402


def connect():
    con = duckdb.connect(config={
        "allow_unsigned_extensions": "true",
        "autoinstall_known_extensions": "false",
        "autoload_known_extensions": "false",
    })
    found = []
    for root in site.getsitepackages() + [site.getusersitepackages()]:
        found += glob.glob(os.path.join(root, "duckdb_ext", "extensions", "v1.4.4", "*", "*.duckdb_extension"))
    names = {os.path.basename(p).split(".")[0]: p for p in found}
    for ext in ("avro", "httpfs", "iceberg"):
        if ext not in names:
            raise SystemExit(f"the duckdb-ext-{ext} package is not installed")
        con.execute(f"LOAD '{names[ext]}'")
    s3 = os.environ.get("FLOE_DUCKDB_S3")
    if s3:
        s3 = json.loads(s3)
        endpoint = s3["endpoint"].split("://", 1)[-1]
        con.execute(
            "CREATE SECRET floe_s3 (TYPE s3, KEY_ID ?, SECRET ?, REGION ?, ENDPOINT ?, URL_STYLE 'path', USE_SSL ?)",
            [s3["key_id"], s3["secret"], s3.get("region", "garage"), endpoint, s3["endpoint"].startswith("https")],
        )
    return con


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
