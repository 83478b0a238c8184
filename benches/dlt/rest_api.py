"""dlt's rest_api source into its filesystem destination (Parquet), against the sandbox:
the same records, the same page size and the same offset pagination apisnap's benchmark job
uses. What users would otherwise pick, run beside apisnap by benches/versus_dlt.rs.

    python rest_api.py BASE_URL OUT_DIR PAGE_SIZE

Logs in as the sandbox's Seal Metrics user, then pages `/stats/events` with `skip` and
`limit` until `total`. Prints one JSON line: the rows dlt wrote (read back from its Parquet
files, the events table alone) and the files."""
import json
import os
import sys
import urllib.request

import dlt
import pyarrow.parquet as pq
from dlt.sources.rest_api import rest_api_source

base, out, page_size = sys.argv[1], sys.argv[2], int(sys.argv[3])

login = urllib.request.Request(
    f"{base}/auth/login",
    data=json.dumps({"email": "analyst@example.com", "password": "sandbox-seal-password"}).encode(),
    headers={"Content-Type": "application/json"},
)
token = json.load(urllib.request.urlopen(login))["access_token"]

source = rest_api_source(
    {
        "client": {"base_url": base, "auth": {"type": "bearer", "token": token}},
        "resources": [
            {
                "name": "events",
                "endpoint": {
                    "path": "stats/events",
                    "data_selector": "data",
                    "paginator": {
                        "type": "offset",
                        "limit": page_size,
                        "offset_param": "skip",
                        "limit_param": "limit",
                        "total_path": "total",
                    },
                },
            }
        ],
    }
)

os.environ["DESTINATION__FILESYSTEM__BUCKET_URL"] = f"file://{os.path.abspath(out)}"
pipeline = dlt.pipeline(
    pipeline_name="bench",
    destination="filesystem",
    dataset_name="sandbox",
    pipelines_dir=os.path.join(out, ".dlt"),
)
pipeline.run(source, loader_file_format="parquet")

rows, files = 0, 0
events = os.path.join(out, "sandbox", "events")
for root, _, names in os.walk(events):
    for name in names:
        if name.endswith(".parquet"):
            files += 1
            rows += pq.ParquetFile(os.path.join(root, name)).metadata.num_rows
print(json.dumps({"rows": rows, "files": files}))
