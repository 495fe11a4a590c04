"""Clients of `floe serve` for floe's REST catalog tests: PyIceberg 0.12's RestCatalog and DuckDB
1.4.4's own iceberg extension (ATTACH ... TYPE iceberg), each talking HTTP to the real server the test
started, plus raw HTTP requests for the error answers. Prints JSON on stdout.

usage (FLOE_REST_S3 holds the S3 settings as JSON, never the command line: they carry secrets):
  rest_tool.py pyiceberg URI NAMESPACE   namespaces, create_table, appends, a delete, errors
  rest_tool.py read      URI NAMESPACE TABLE [REF]    rows of a table (at a branch or tag)
  rest_tool.py evolve    URI NAMESPACE   a schema change, then create_table_transaction
  rest_tool.py duckdb    URI NAMESPACE   ATTACH, SELECT floe's events, CREATE TABLE, INSERT, CREATE SCHEMA
  rest_tool.py duckdb-read URI NAMESPACE TABLE
  rest_tool.py duckdb-more URI NAMESPACE SNAPSHOT   time travel, CTAS, a two-table transaction,
                                                    DELETE, UPDATE, DROP
"""
import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src" / "bench"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from rows import rows_json  # noqa: E402


def s3():
    raw = os.environ.get("FLOE_REST_S3")
    return json.loads(raw) if raw else None


def rest_catalog(uri):
    from pyiceberg.catalog.rest import RestCatalog

    props = {"uri": uri}
    keys = s3()
    if keys:
        # The server hands out endpoint, region and path style; the keys are the client's own.
        props.update({"s3.access-key-id": keys["key_id"], "s3.secret-access-key": keys["secret"]})
    return RestCatalog("floe", **props)


def http(method, url, body=None):
    """(status, parsed JSON body or None) of one raw request."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req) as resp:
            text = resp.read()
            return resp.status, json.loads(text) if text else None
    except urllib.error.HTTPError as e:
        text = e.read()
        return e.code, json.loads(text) if text else None


def error_of(answer):
    status, body = answer
    err = (body or {}).get("error", {})
    return {"status": status, "type": err.get("type"), "code": err.get("code")}


SCHEMA = pa.schema([
    pa.field("id", pa.int64(), nullable=False),
    pa.field("user_id", pa.string()),
    pa.field("amount", pa.float64()),
])


def pyiceberg(uri, ns):
    cat = rest_catalog(uri)
    out = {}
    _, config = http("GET", f"{uri}/v1/config")
    out["endpoints"] = config["endpoints"]

    cat.create_namespace((ns, "child"), {"owner": "py"})
    out["children"] = sorted(list(n) for n in cat.list_namespaces((ns,)))
    out["top_level_has_ns"] = (ns,) in cat.list_namespaces()
    out["child_exists"] = cat.namespace_exists((ns, "child"))
    out["child_properties"] = cat.load_namespace_properties((ns, "child")).get("owner")
    summary = cat.update_namespace_properties((ns, "child"), removals={"nope", "owner"}, updates={"k": "v"})
    out["properties_update"] = {
        "updated": sorted(summary.updated), "removed": sorted(summary.removed), "missing": sorted(summary.missing)}
    out["child_properties_after"] = {k: v for k, v in cat.load_namespace_properties((ns, "child")).items()
                                     if k != "exists"}
    out["drop_non_empty_parent"] = error_of(http("DELETE", f"{uri}/v1/namespaces/{ns}"))
    cat.drop_namespace((ns, "child"))
    out["child_exists_after_drop"] = cat.namespace_exists((ns, "child"))

    table = cat.create_table((ns, "py_events"), schema=SCHEMA)
    table.append(pa.table({"id": [1, 2, 3], "user_id": ["a", "b", None], "amount": [1.5, 2.5, 3.5]}, schema=SCHEMA))
    first = table.current_snapshot().snapshot_id
    table.append(pa.table({"id": [4], "user_id": ["d"], "amount": [4.5]}, schema=SCHEMA))
    table.delete("id == 2")
    table = cat.load_table((ns, "py_events"))
    out["rows"] = rows_json(table.scan().to_arrow().to_pylist())
    out["snapshots"] = len(table.metadata.snapshots)
    out["tables"] = sorted(t[-1] for t in cat.list_tables((ns,)))
    out["table_exists"] = cat.table_exists((ns, "py_events"))

    scratch = cat.create_table((ns, "scratch"), schema=SCHEMA)
    scratch.append(pa.table({"id": [7], "user_id": ["s"], "amount": [7.5]}, schema=SCHEMA))
    cat.rename_table((ns, "scratch"), (ns, "renamed"))
    out["renamed_rows"] = rows_json(cat.load_table((ns, "renamed")).scan().to_arrow().to_pylist())
    out["scratch_exists"] = cat.table_exists((ns, "scratch"))
    cat.purge_table((ns, "renamed"))
    out["renamed_exists_after_purge"] = cat.table_exists((ns, "renamed"))

    base = f"{uri}/v1/namespaces/{ns}/tables/py_events"
    out["stale_ref"] = error_of(http("POST", base, {
        "requirements": [{"type": "assert-ref-snapshot-id", "ref": "main", "snapshot-id": first}],
        "updates": [{"action": "set-properties", "updates": {"x": "y"}}]}))
    out["unknown_update"] = error_of(http("POST", base, {
        "requirements": [], "updates": [{"action": "frobnicate-table", "x": 1}]}))
    out["missing_table"] = error_of(http("GET", f"{uri}/v1/namespaces/{ns}/tables/no_such_table"))
    out["missing_namespace"] = error_of(http("GET", f"{uri}/v1/namespaces/{ns}_missing"))
    out["properties_after_refused_commits"] = cat.load_table((ns, "py_events")).properties.get("x")
    print(json.dumps(out))


def read(uri, ns, name, ref=None):
    table = rest_catalog(uri).load_table((ns, name))
    snapshot = table.snapshot_by_name(ref) if ref else table.current_snapshot()
    scan = table.scan(snapshot_id=snapshot.snapshot_id) if ref else table.scan()
    print(json.dumps({
        "rows": rows_json(scan.to_arrow().to_pylist()),
        "current_snapshot": snapshot.snapshot_id if snapshot else None,
        "refs": sorted(table.metadata.refs),
        "partition_fields": [f.name for f in table.spec().fields],
    }))


def evolve(uri, ns):
    """A schema change on a table PyIceberg created, an append with the new column, then a table
    created and filled in one create_table_transaction (stage-create, then one assert-create commit)."""
    from pyiceberg.types import StringType

    cat = rest_catalog(uri)
    out = {}
    table = cat.create_table((ns, "evolving"), schema=SCHEMA)
    table.append(pa.table({"id": [1], "user_id": ["a"], "amount": [1.5]}, schema=SCHEMA))
    with table.update_schema() as update:
        update.add_column("note", StringType())
    table = cat.load_table((ns, "evolving"))
    wider = pa.schema(list(SCHEMA) + [pa.field("note", pa.string())])
    table.append(pa.table({"id": [2], "user_id": ["b"], "amount": [2.5], "note": ["n"]}, schema=wider))
    table = cat.load_table((ns, "evolving"))
    out["evolved_fields"] = [[f.field_id, f.name] for f in table.schema().fields]
    out["evolved_rows"] = rows_json(table.scan().to_arrow().to_pylist())

    tx = cat.create_table_transaction((ns, "staged"), schema=SCHEMA)
    tx.append(pa.table({"id": [5, 6], "user_id": ["e", "f"], "amount": [5.5, 6.5]}, schema=SCHEMA))
    tx.commit_transaction()
    staged = cat.load_table((ns, "staged"))
    out["staged_rows"] = rows_json(staged.scan().to_arrow().to_pylist())
    out["staged_fields"] = [[f.field_id, f.name] for f in staged.schema().fields]
    print(json.dumps(out))


def duckdb_attach(uri):
    from peer import duckdb_connect

    keys = s3()
    con = duckdb_connect(keys and {
        "endpoint": keys["endpoint"], "access_key_id": keys["key_id"],
        "secret_access_key": keys["secret"], "region": keys.get("region", "garage")})
    con.execute(f"ATTACH 'floe' AS lake (TYPE iceberg, ENDPOINT '{uri}', AUTHORIZATION_TYPE 'none', "
                "ACCESS_DELEGATION_MODE 'none')")
    return con


def duckdb_read(uri, ns, name):
    con = duckdb_attach(uri)
    print(json.dumps({"rows": con.execute(f'SELECT * FROM lake."{ns}"."{name}" ORDER BY 1').fetchall()}))


def duckdb(uri, ns):
    con = duckdb_attach(uri)
    out = {}
    out["events"] = con.execute(f'SELECT count(*), sum(id) FROM lake."{ns}".events').fetchone()
    con.execute(f'CREATE TABLE lake."{ns}".duck (id BIGINT, name VARCHAR)')
    con.execute(f"INSERT INTO lake.\"{ns}\".duck VALUES (1, 'a'), (2, 'b')")
    con.execute(f"INSERT INTO lake.\"{ns}\".duck VALUES (3, 'c')")
    out["duck"] = con.execute(f'SELECT id, name FROM lake."{ns}".duck ORDER BY id').fetchall()
    # A schema DuckDB creates is a namespace of floe's catalog; a table in it reads back.
    con.execute(f'CREATE SCHEMA lake."{ns}_duck"')
    con.execute(f'CREATE TABLE lake."{ns}_duck".t (id BIGINT)')
    con.execute(f'INSERT INTO lake."{ns}_duck".t VALUES (7)')
    in_new_schema = con.execute(f'SELECT id FROM lake."{ns}_duck".t').fetchall()
    assert in_new_schema == [(7,)], in_new_schema
    print(json.dumps(out))


def attempt(con, sql):
    """None when `sql` runs, else DuckDB's error message."""
    try:
        con.execute(sql)
        return None
    except Exception as e:  # noqa: BLE001 - the message is the result
        return str(e)


def duckdb_more(uri, ns, snapshot):
    con = duckdb_attach(uri)
    t = f'lake."{ns}"'
    out = {}
    out["events_now"] = con.execute(f"SELECT count(*) FROM {t}.events").fetchone()[0]
    out["events_then"] = con.execute(
        f"SELECT count(*) FROM {t}.events AT (VERSION => {int(snapshot)})").fetchone()[0]
    # On a local warehouse DuckDB 1.4.4 cannot create a staged table's directory (it passes the
    # file:// URI to mkdir, without parents): the error is the result there.
    out["ctas_error"] = attempt(con, f"CREATE TABLE {t}.ctas AS SELECT id, user_id FROM {t}.events WHERE id < 4")
    con.execute(f"CREATE TABLE {t}.duck_a (id BIGINT, name VARCHAR)")
    con.execute(f"CREATE TABLE {t}.duck_b (id BIGINT, name VARCHAR)")
    con.execute(f"INSERT INTO {t}.duck_a VALUES (1, 'a1'), (2, 'a2'), (3, 'a3')")
    con.execute(f"INSERT INTO {t}.duck_b VALUES (1, 'b1')")
    con.execute("BEGIN")
    con.execute(f"INSERT INTO {t}.duck_a VALUES (4, 'a4')")
    con.execute(f"INSERT INTO {t}.duck_b VALUES (2, 'b2')")
    con.execute("COMMIT")
    out["delete_error"] = attempt(con, f"DELETE FROM {t}.duck_a WHERE id = 2")
    out["update_error"] = attempt(con, f"UPDATE {t}.duck_a SET name = 'A3' WHERE id = 3")
    out["duck_a"] = con.execute(f"SELECT id, name FROM {t}.duck_a ORDER BY id").fetchall()
    con.execute(f"CREATE TABLE {t}.doomed (id BIGINT)")
    con.execute(f"INSERT INTO {t}.doomed VALUES (1)")
    con.execute(f"DROP TABLE {t}.doomed")
    out["tables"] = sorted(r[0] for r in con.execute(
        f"SELECT table_name FROM duckdb_tables() WHERE database_name = 'lake' AND schema_name = '{ns}'").fetchall())
    print(json.dumps(out))


if __name__ == "__main__":
    cmd, uri, ns, *rest = sys.argv[1:]
    if cmd == "pyiceberg":
        pyiceberg(uri, ns)
    elif cmd == "read":
        read(uri, ns, *rest)
    elif cmd == "evolve":
        evolve(uri, ns)
    elif cmd == "duckdb":
        duckdb(uri, ns)
    elif cmd == "duckdb-more":
        duckdb_more(uri, ns, rest[0])
    elif cmd == "duckdb-read":
        duckdb_read(uri, ns, rest[0])
    else:
        raise SystemExit(f"unknown command {cmd}")
