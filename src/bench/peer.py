"""floe bench's peer: PyIceberg with PyArrow (the "Pythonic stack") appending a Parquet file's rows
to a fresh Iceberg table of a SQL catalog, or committing them as COUNT existing Parquet files written
into the table's data folder beforehand (`add_files`). Only the append or the commit is timed. Prints
one JSON object.

usage: FLOE_PYICEBERG_CONFIG=CONFIG_JSON python3 peer.py append NAMESPACE TABLE PARQUET_PATH
       FLOE_PYICEBERG_CONFIG=CONFIG_JSON python3 peer.py add_files NAMESPACE TABLE COUNT PARQUET_PATH
CONFIG_JSON holds catalog_name, uri (SQLAlchemy URL), warehouse and optional s3 settings. It comes
through the environment, never the command line, because it holds the catalog password and the S3
secret (a command line is visible to every local user).
"""
import json
import os
import sys
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pyiceberg
from pyiceberg.catalog.sql import SqlCatalog


def config():
    """The floe config the parent process handed over in the environment."""
    return json.loads(os.environ["FLOE_PYICEBERG_CONFIG"])


def catalog(cfg):
    """The SqlCatalog a floe config describes (also used by the interop tests' PyIceberg tool)."""
    props = {"uri": cfg["uri"], "warehouse": cfg["warehouse"]}
    s3 = cfg.get("s3")
    if s3:
        props.update({
            "s3.endpoint": s3["endpoint"],
            "s3.access-key-id": s3["access_key_id"],
            "s3.secret-access-key": s3["secret_access_key"],
            "s3.region": s3["region"],
            "s3.force-virtual-addressing": "false",
        })
    return SqlCatalog(cfg["catalog_name"], **props)


def without_field_ids(data):
    """The table with a schema that carries no Parquet field ids (PyIceberg's add_files refuses ids)."""
    schema = pa.schema([pa.field(f.name, f.type, f.nullable) for f in data.schema])
    return data.cast(schema)


def main():
    cfg = config()
    mode, ns, name = sys.argv[1], sys.argv[2], sys.argv[3]
    path = sys.argv[-1]
    cat = catalog(cfg)
    try:
        cat.create_namespace(ns)
    except Exception:
        pass  # it exists
    data = without_field_ids(pq.read_table(path))
    table = cat.create_table((ns, name), schema=data.schema)
    if mode == "append":
        t0 = time.perf_counter()
        table.append(data)
        seconds = time.perf_counter() - t0
    elif mode == "add_files":
        count = int(sys.argv[4])
        per_file = max(1, -(-data.num_rows // count))
        io = table.io
        paths = []
        for i in range(0, data.num_rows, per_file):
            p = f"{table.location()}/data/added-{len(paths):05}.parquet"
            with io.new_output(p).create(overwrite=True) as out:
                pq.write_table(data.slice(i, per_file), out)
            paths.append(p)
        t0 = time.perf_counter()
        table.add_files(paths)
        seconds = time.perf_counter() - t0
    else:
        raise SystemExit(f"unknown mode {mode!r}: append or add_files")
    try:
        cat.purge_table((ns, name))
    except Exception:
        cat.drop_table((ns, name))
    print(json.dumps({"rows": data.num_rows, "seconds": seconds, "version": pyiceberg.__version__}))


if __name__ == "__main__":
    main()
