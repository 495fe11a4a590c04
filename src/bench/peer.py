"""floe bench's peer: PyIceberg with PyArrow (the "Pythonic stack") appending a Parquet file's rows
to a fresh Iceberg table of a SQL catalog. Only the append is timed. Prints one JSON object.

usage: FLOE_PYICEBERG_CONFIG=CONFIG_JSON python3 peer.py NAMESPACE TABLE PARQUET_PATH
CONFIG_JSON holds catalog_name, uri (SQLAlchemy URL), warehouse and optional s3 settings. It comes
through the environment, never the command line, because it holds the catalog password and the S3
secret (a command line is visible to every local user).
"""
import json
import os
import sys
import time

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


def main():
    cfg = config()
    ns, name, path = sys.argv[1], sys.argv[2], sys.argv[3]
    cat = catalog(cfg)
    try:
        cat.create_namespace(ns)
    except Exception:
        pass  # it exists
    data = pq.read_table(path)
    table = cat.create_table((ns, name), schema=data.schema)
    t0 = time.perf_counter()
    table.append(data)
    seconds = time.perf_counter() - t0
    try:
        cat.purge_table((ns, name))
    except Exception:
        cat.drop_table((ns, name))
    print(json.dumps({"rows": data.num_rows, "seconds": seconds, "version": pyiceberg.__version__}))


if __name__ == "__main__":
    main()
