"""Reads a hive-laid-out snapshot with pyarrow and DuckDB; prints what each saw, as JSON:
rows per (account_id, date), and the partition columns' types."""
import json
import sys

import duckdb
import pyarrow.dataset as ds

root = sys.argv[1]
seen = {}

table = ds.dataset(root, format="parquet", partitioning="hive").to_table()
counts = {}
for account, date in zip(table.column("account_id").to_pylist(), table.column("date").to_pylist()):
    key = f"{account}/{date}"
    counts[key] = counts.get(key, 0) + 1
seen["pyarrow"] = {
    "rows": table.num_rows,
    "counts": counts,
    "account_id_type": str(table.schema.field("account_id").type),
    "ids": sorted(table.column("id").to_pylist()),
}

con = duckdb.connect()
rows = con.execute(
    "select account_id, cast(date as varchar), count(*) from "
    f"read_parquet('{root}/**/*.parquet', hive_partitioning = true) group by all"
).fetchall()
seen["duckdb"] = {
    "rows": sum(r[2] for r in rows),
    "counts": {f"{a}/{d}": n for a, d, n in rows},
}
print(json.dumps(seen))
