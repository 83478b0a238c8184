"""Run one of the README's recipes as written and print what it read as JSON.

Usage: recipe.py python|sql FILE   (run in the directory apisnap ran in)

A Python recipe leaves its result in `df` (pandas or polars); an SQL recipe is DuckDB SQL
whose last statement is the query.
"""
import json
import sys

import duckdb

kind, path = sys.argv[1], sys.argv[2]
code = open(path, encoding="utf-8").read()
if kind == "python":
    scope = {}
    exec(compile(code, path, "exec"), scope)
    df = scope["df"]
    rows = len(df)
    ids = sorted(int(i) for i in df["id"].to_list())
    columns = list(df.columns)
    snapshots = sorted(set(df["snapshot"].to_list())) if "snapshot" in columns else []
else:
    query = code.strip().rstrip(";")
    rel = duckdb.sql(query)
    columns = rel.columns
    rows = duckdb.sql(f"SELECT count(*) FROM ({query})").fetchone()[0]
    ids = sorted(r[0] for r in duckdb.sql(f"SELECT id FROM ({query})").fetchall())
    snapshots = (
        sorted(r[0] for r in duckdb.sql(f"SELECT DISTINCT snapshot FROM ({query})").fetchall())
        if "snapshot" in columns
        else []
    )
print(json.dumps({"rows": rows, "ids": ids, "columns": columns, "snapshots": snapshots}))
