"""Clients of `floe serve`'s auth and storage-key handling, for tests/it/rest_server.rs: PyIceberg
0.12's RestCatalog with an OAuth2 credential, and DuckDB 1.4.4's iceberg extension attaching with
OAuth2 client credentials, with vended S3 keys, or with its own S3 secret. Each reads one table and
prints JSON on stdout; a refused client prints {"error": <exception class>, "message": ...}.

usage (FLOE_REST_S3 holds the S3 settings as JSON and FLOE_REST_CREDENTIAL the OAuth client as
"ID:SECRET", never the command line: they are secrets):
  rest_server_tool.py pyiceberg-oauth   URI NAMESPACE TABLE   RestCatalog(credential=...)
  rest_server_tool.py duckdb-oauth      URI NAMESPACE TABLE   ATTACH with CLIENT_ID/CLIENT_SECRET
  rest_server_tool.py duckdb-vended     URI NAMESPACE TABLE   ATTACH, keys from the load result
  rest_server_tool.py duckdb-own-secret URI NAMESPACE TABLE   ACCESS_DELEGATION_MODE 'none' + CREATE SECRET
"""
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src" / "bench"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from rows import rows_json  # noqa: E402
from rest_tool import s3  # noqa: E402


def credential():
    return os.environ["FLOE_REST_CREDENTIAL"]


def refused(e):
    print(json.dumps({"error": type(e).__name__, "message": str(e)}))


def pyiceberg_oauth(uri, ns, name):
    from pyiceberg.catalog.rest import RestCatalog

    props = {"uri": uri, "credential": credential()}
    keys = s3()
    if keys:
        props.update({"s3.access-key-id": keys["key_id"], "s3.secret-access-key": keys["secret"]})
    try:
        cat = RestCatalog("floe", **props)
        table = cat.load_table((ns, name))
    except Exception as e:  # noqa: BLE001 - the test asserts on the refusal
        return refused(e)
    print(json.dumps({
        "namespaces": sorted(list(n) for n in cat.list_namespaces()),
        "rows": rows_json(table.scan().to_arrow().to_pylist()),
    }))


def sql_text(value):
    """A SQL string literal (ATTACH options take no parameters)."""
    return "'" + value.replace("'", "''") + "'"


def duckdb_select(con, ns, name):
    count, total = con.execute(f'SELECT count(*), sum(id) FROM lake."{ns}"."{name}"').fetchone()
    print(json.dumps({"count": count, "sum": int(total) if total is not None else None}))


def duckdb_oauth(uri, ns, name):
    from peer import duckdb_connect

    client_id, secret = credential().split(":", 1)
    keys = s3()
    con = duckdb_connect(keys and {
        "endpoint": keys["endpoint"], "access_key_id": keys["key_id"],
        "secret_access_key": keys["secret"], "region": keys.get("region", "garage")})
    try:
        con.execute(f"ATTACH 'floe' AS lake (TYPE iceberg, ENDPOINT '{uri}', CLIENT_ID {sql_text(client_id)}, "
                    f"CLIENT_SECRET {sql_text(secret)}, OAUTH2_SERVER_URI '{uri}/v1/oauth/tokens', "
                    "ACCESS_DELEGATION_MODE 'none')")
    except Exception as e:  # noqa: BLE001
        return refused(e)
    duckdb_select(con, ns, name)


def duckdb_vended(uri, ns, name):
    from peer import duckdb_connect

    # No S3 secret of its own: the keys come from the load result's config.
    con = duckdb_connect(None)
    con.execute(f"ATTACH 'floe' AS lake (TYPE iceberg, ENDPOINT '{uri}', AUTHORIZATION_TYPE 'none')")
    duckdb_select(con, ns, name)


def duckdb_own_secret(uri, ns, name):
    from peer import duckdb_connect

    keys = s3()
    con = duckdb_connect(None)
    con.execute("CREATE SECRET own_s3 (TYPE s3, KEY_ID ?, SECRET ?, REGION ?, ENDPOINT ?, "
                "URL_STYLE 'path', USE_SSL false)",
                [keys["key_id"], keys["secret"], keys.get("region", "garage"),
                 keys["endpoint"].split("://", 1)[-1]])
    con.execute(f"ATTACH 'floe' AS lake (TYPE iceberg, ENDPOINT '{uri}', AUTHORIZATION_TYPE 'none', "
                "ACCESS_DELEGATION_MODE 'none')")
    duckdb_select(con, ns, name)


if __name__ == "__main__":
    cmd, uri, ns, name = sys.argv[1:]
    commands = {
        "pyiceberg-oauth": pyiceberg_oauth,
        "duckdb-oauth": duckdb_oauth,
        "duckdb-vended": duckdb_vended,
        "duckdb-own-secret": duckdb_own_secret,
    }
    if cmd not in commands:
        raise SystemExit(f"unknown command {cmd}")
    commands[cmd](uri, ns, name)
