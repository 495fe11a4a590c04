"""Concurrent PyIceberg appenders on one table, for `floe bench --rest` and the REST catalog's
concurrency test: WORKERS processes each commit COMMITS one-row appends, through PyIceberg's
RestCatalog against `floe serve` (`rest URI`) or through its SqlCatalog on floe's catalog database
(`sql`). A writer that loses a race (409 `CommitFailedException`) refreshes the table and retries, as
a job would, and counts the conflict. The workers start together behind a barrier, after their
imports and their first load; only the appends are timed. Row ids are unique: worker * 1,000,000 +
commit, in column `id`; column `writer` says `py<worker>`.

usage: FLOE_PYICEBERG_CONFIG=CONFIG_JSON python3 appenders.py rest URI NAMESPACE TABLE WORKERS COMMITS [FIRST_WORKER]
       FLOE_PYICEBERG_CONFIG=CONFIG_JSON python3 appenders.py sql NAMESPACE TABLE WORKERS COMMITS [FIRST_WORKER]
CONFIG_JSON is floe bench's PyIceberg config (catalog_name, uri, warehouse, optional s3); it comes
through the environment because it holds secrets. The REST client takes only the S3 keys from it: the
server hands out endpoint, region and path style. Prints {"commits", "conflicts", "seconds", "ids"}.
"""
import json
import multiprocessing
import os
import sys
import time

# A writer gives up after this many lost races on one append.
MAX_TRIES = 200


def open_catalog(kind, uri):
    cfg = json.loads(os.environ["FLOE_PYICEBERG_CONFIG"])
    s3 = cfg.get("s3")
    if kind == "rest":
        from pyiceberg.catalog.rest import RestCatalog

        props = {"uri": uri}
        if s3:
            props.update({"s3.access-key-id": s3["access_key_id"], "s3.secret-access-key": s3["secret_access_key"]})
        return RestCatalog("floe", **props)
    from pyiceberg.catalog.sql import SqlCatalog

    props = {"uri": cfg["uri"], "warehouse": cfg["warehouse"]}
    if s3:
        props.update({
            "s3.endpoint": s3["endpoint"],
            "s3.access-key-id": s3["access_key_id"],
            "s3.secret-access-key": s3["secret_access_key"],
            "s3.region": s3["region"],
            "s3.force-virtual-addressing": "false",
        })
    return SqlCatalog(cfg["catalog_name"], **props)


def worker(kind, uri, ns, name, index, commits, barrier, results):
    import pyarrow as pa
    from pyiceberg.exceptions import CommitFailedException

    try:
        table = open_catalog(kind, uri).load_table((ns, name))
        schema = table.schema().as_arrow()
        barrier.wait()
        start = time.monotonic()
        conflicts = 0
        ids = []
        for commit in range(commits):
            row_id = index * 1_000_000 + commit
            rows = pa.table({"id": [row_id], "writer": [f"py{index}"]}, schema=schema)
            for _ in range(MAX_TRIES):
                try:
                    table.append(rows)
                    break
                except CommitFailedException:
                    conflicts += 1
                    table = table.refresh()
            else:
                raise RuntimeError(f"worker {index} lost {MAX_TRIES} races on one append")
            ids.append(row_id)
        results.put({"start": start, "end": time.monotonic(), "conflicts": conflicts, "ids": ids})
    except BaseException as e:  # reported to the parent, which fails
        barrier.abort()
        results.put({"error": f"worker {index}: {type(e).__name__}: {e}"})


def main():
    kind = sys.argv[1]
    args = sys.argv[2:]
    uri = args.pop(0) if kind == "rest" else None
    ns, name, workers, commits = args[0], args[1], int(args[2]), int(args[3])
    first = int(args[4]) if len(args) > 4 else 0
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(workers)
    results = ctx.Queue()
    procs = [ctx.Process(target=worker, args=(kind, uri, ns, name, first + i, commits, barrier, results))
             for i in range(workers)]
    for p in procs:
        p.start()
    done = [results.get(timeout=900) for _ in procs]
    for p in procs:
        p.join()
    errors = [d["error"] for d in done if "error" in d]
    if errors:
        sys.exit("; ".join(errors))
    print(json.dumps({
        "commits": sum(len(d["ids"]) for d in done),
        "conflicts": sum(d["conflicts"] for d in done),
        "seconds": max(d["end"] for d in done) - min(d["start"] for d in done),
        "ids": sorted(i for d in done for i in d["ids"]),
    }))


if __name__ == "__main__":
    main()
