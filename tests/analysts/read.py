"""Open an apisnap snapshot the way analysts do, and print what the readers see as JSON.

Usage: read.py parquet|csv SNAPSHOT_DIR
"""
import glob
import json
import os
import sys

import duckdb
import pyarrow.csv as pacsv
import pyarrow.dataset as ds

fmt, snapshot = sys.argv[1], sys.argv[2]
pattern = os.path.join(snapshot, f"part-*.{fmt}")
out = {}

if fmt == "parquet":
    table = ds.dataset(sorted(glob.glob(pattern)), format="parquet").to_table()
else:
    tables = [pacsv.read_csv(p) for p in sorted(glob.glob(pattern))]
    table = tables[0]
out["pyarrow"] = {
    "rows": table.num_rows,
    "columns": [f.name for f in table.schema],
    "types": {f.name: str(f.type) for f in table.schema},
}

con = duckdb.connect()
reader = "read_parquet" if fmt == "parquet" else "read_csv_auto"
rel = con.sql(f"SELECT * FROM {reader}('{pattern}')")
out["duckdb"] = {
    "rows": con.sql(f"SELECT count(*) FROM {reader}('{pattern}')").fetchone()[0],
    "columns": rel.columns,
    "types": {c: str(t) for c, t in zip(rel.columns, rel.types)},
    "sum_id": con.sql(f"SELECT sum(id) FROM {reader}('{pattern}')").fetchone()[0],
}
print(json.dumps(out))
