"""floe bench's peer: PyIceberg with PyArrow (the "Pythonic stack") appending a Parquet file's rows
to a fresh Iceberg table of a SQL catalog, or committing them as COUNT existing Parquet files written
into the table's data folder beforehand (`add_files`); for the upsert benchmark, upserting a source
into a table of the same base rows and codec as floe's, and full scans of floe's tables by PyIceberg
and by DuckDB's iceberg extension. Only the append, the commit, the upsert or the scan is timed.
Prints one JSON object.

usage: FLOE_PYICEBERG_CONFIG=CONFIG_JSON python3 peer.py append NAMESPACE TABLE CODEC PARQUET_PATH
       FLOE_PYICEBERG_CONFIG=CONFIG_JSON python3 peer.py add_files NAMESPACE TABLE COUNT PARQUET_PATH
       FLOE_PYICEBERG_CONFIG=CONFIG_JSON python3 peer.py upsert NAMESPACE TABLE CODEC FILES BASE SOURCE
       FLOE_PYICEBERG_CONFIG=CONFIG_JSON python3 peer.py scan SPEC_JSON
CONFIG_JSON holds catalog_name, uri (SQLAlchemy URL), warehouse and optional s3 settings. It comes
through the environment, never the command line, because it holds the catalog password and the S3
secret (a command line is visible to every local user). SPEC_JSON (no secret) names the states to
scan: {"runs": N, "states": [{"state", "namespace", "table", "snapshot_id", "metadata"}],
"compare": [{"label", "namespace", "table", "snapshot_id"}]}.
"""
import glob
import json
import os
import site
import statistics
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


def duckdb_connect(s3=None):
    """A DuckDB 1.4.4 connection with its avro, httpfs and iceberg extensions loaded from the pip
    packages' files (no network), and an S3 secret when `s3` (floe's config's s3 settings) is given.
    Also used by the interop tests' DuckDB tool."""
    import duckdb

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
    if s3:
        endpoint = s3["endpoint"] or ""
        con.execute(
            "CREATE SECRET floe_s3 (TYPE s3, KEY_ID ?, SECRET ?, REGION ?, ENDPOINT ?, URL_STYLE 'path', USE_SSL ?)",
            [s3["access_key_id"], s3["secret_access_key"], s3.get("region") or "us-east-1",
             endpoint.split("://", 1)[-1], endpoint.startswith("https")],
        )
    return con


def added_since(table, base_snapshot_id):
    """What the snapshots after `base_snapshot_id` up to the head added: their count, the bytes of
    the files they added (`added-files-size`, data and delete files) and the files by kind."""
    out = {"snapshots": 0, "bytes_written": 0, "data_files_added": 0, "delete_files_added": 0}
    snap = table.current_snapshot()
    while snap is not None and snap.snapshot_id != base_snapshot_id:
        summary = snap.summary
        out["snapshots"] += 1
        out["bytes_written"] += int(summary.get("added-files-size") or 0)
        out["data_files_added"] += int(summary.get("added-data-files") or 0)
        out["delete_files_added"] += int(summary.get("added-delete-files") or 0)
        snap = table.snapshot_by_id(snap.parent_snapshot_id) if snap.parent_snapshot_id else None
    return out


def upsert(cat, ns, name, codec, files, base_path, source_path):
    """Load the base rows into a fresh table of codec `codec` in `files` appends, then time one
    `Table.upsert` of the source on the key `id`."""
    base = without_field_ids(pq.read_table(base_path))
    source = without_field_ids(pq.read_table(source_path))
    table = cat.create_table(
        (ns, name), schema=base.schema, properties={"write.parquet.compression-codec": codec}
    )
    per_append = max(1, -(-base.num_rows // files))
    for i in range(0, base.num_rows, per_append):
        table.append(base.slice(i, per_append))
    table = cat.load_table((ns, name))
    base_snapshot_id = table.current_snapshot().snapshot_id
    t0 = time.perf_counter()
    result = table.upsert(source, join_cols=["id"])
    seconds = time.perf_counter() - t0
    table = cat.load_table((ns, name))
    return {
        "seconds": seconds,
        "rows_updated": result.rows_updated,
        "rows_inserted": result.rows_inserted,
        "codec": table.properties.get("write.parquet.compression-codec"),
        "version": pyiceberg.__version__,
        **added_since(table, base_snapshot_id),
    }


def scan(cat, cfg, spec):
    """Full scans of every state of `spec` by PyIceberg (`Table.scan().to_arrow()`, the table loaded
    from the catalog) and by DuckDB (`iceberg_scan` of the state's metadata file): per reader, a
    warm-up read of every state, then `runs` rounds reading each state once (the states' order
    rotating), so every state meets the same warmness; the median per state. Then the tables of
    `compare`, read by PyIceberg and sorted by id, are checked to hold the same rows."""
    states = spec["states"]
    runs = max(1, int(spec.get("runs", 1)))

    def pyiceberg_read(s):
        table = cat.load_table((s["namespace"], s["table"]))
        return table.scan(snapshot_id=s["snapshot_id"]).to_arrow().num_rows

    readers = {"pyiceberg": pyiceberg_read}
    out = {"version": pyiceberg.__version__, "scans": [], "errors": {}}
    try:
        con = duckdb_connect(cfg.get("s3"))
        import duckdb

        out["duckdb_version"] = duckdb.__version__

        def duckdb_read(s):
            return con.execute("SELECT * FROM iceberg_scan(?)", [s["metadata"]]).fetch_arrow_table().num_rows

        readers["duckdb"] = duckdb_read
    except BaseException as e:  # DuckDB or its extensions missing: PyIceberg's figures still count
        out["errors"]["duckdb"] = str(e)
    for reader, read in readers.items():
        rows = {s["state"]: read(s) for s in states}  # warm-up
        seconds = {s["state"]: [] for s in states}
        for r in range(runs):
            for k in range(len(states)):
                s = states[(r + k) % len(states)]
                t0 = time.perf_counter()
                read(s)
                seconds[s["state"]].append(time.perf_counter() - t0)
        for s in states:
            out["scans"].append({
                "reader": reader,
                "state": s["state"],
                "rows": rows[s["state"]],
                "seconds": statistics.median(seconds[s["state"]]),
            })
    out.update({"compared": [], "rows_after": {}, "differing": []})
    first = None  # one table besides the reference in memory at a time
    for c in spec.get("compare", []):
        table = cat.load_table((c["namespace"], c["table"]))
        data = table.scan(snapshot_id=c.get("snapshot_id")).to_arrow().sort_by("id")
        out["compared"].append(c["label"])
        out["rows_after"][c["label"]] = data.num_rows
        if first is None:
            first = data
        elif not data.equals(first):
            out["differing"].append(c["label"])
        del data
    return out


def main():
    cfg = config()
    mode = sys.argv[1]
    cat = catalog(cfg)
    if mode == "scan":
        print(json.dumps(scan(cat, cfg, json.loads(sys.argv[2]))))
        return
    ns, name = sys.argv[2], sys.argv[3]
    path = sys.argv[-1]
    try:
        cat.create_namespace(ns)
    except Exception:
        pass  # it exists
    if mode == "upsert":
        codec, files, base_path = sys.argv[4], int(sys.argv[5]), sys.argv[6]
        print(json.dumps(upsert(cat, ns, name, codec, files, base_path, path)))
        return  # the table stays for the scans' comparison; floe bench drops it
    data = without_field_ids(pq.read_table(path))
    # The append writes with floe's codec (PyIceberg's own default is zstd, floe's Snappy): a fair pair.
    properties = {"write.parquet.compression-codec": sys.argv[4]} if mode == "append" else {}
    table = cat.create_table((ns, name), schema=data.schema, properties=properties)
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
        raise SystemExit(f"unknown mode {mode!r}: append, add_files, upsert or scan")
    try:
        cat.purge_table((ns, name))
    except Exception:
        cat.drop_table((ns, name))
    print(json.dumps({
        "rows": data.num_rows,
        "seconds": seconds,
        "version": pyiceberg.__version__,
        "codec": properties.get("write.parquet.compression-codec"),
    }))


if __name__ == "__main__":
    main()
