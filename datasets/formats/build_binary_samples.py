"""Writes the binary samples from ``math500.jsonl``, the way Hugging Face ``datasets`` writes them.

* ``math500.parquet``: what ``Dataset.to_parquet`` writes (the columns as they are);
* ``math500-saved/``: what ``Dataset.save_to_disk`` writes: ``dataset_info.json``,
  ``state.json`` and the rows as an Arrow IPC stream, ``data-00000-of-00001.arrow``.

Run from the repository root: ``.venv/bin/python datasets/formats/build_binary_samples.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
ARROW_FILE = "data-00000-of-00001.arrow"
FEATURES = {
    "problem": {"dtype": "string", "_type": "Value"},
    "solution": {"dtype": "string", "_type": "Value"},
    "answer": {"dtype": "string", "_type": "Value"},
    "subject": {"dtype": "string", "_type": "Value"},
    "level": {"dtype": "int64", "_type": "Value"},
    "unique_id": {"dtype": "string", "_type": "Value"},
}


def main() -> None:
    records = [json.loads(line) for line in (HERE / "math500.jsonl").read_text(encoding="utf-8").splitlines()]
    table = pa.Table.from_pylist(records)
    pq.write_table(table, HERE / "math500.parquet")

    saved = HERE / "math500-saved"
    saved.mkdir(exist_ok=True)
    info = {"citation": "", "description": "", "features": FEATURES, "homepage": "", "license": ""}
    schema = table.schema.with_metadata({"huggingface": json.dumps({"info": {"features": FEATURES}})})
    with pa.OSFile(str(saved / ARROW_FILE), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
        writer.write_table(table.replace_schema_metadata(schema.metadata))
    state: dict[str, object] = {
        "_data_files": [{"filename": ARROW_FILE}],
        "_fingerprint": "cot-transfer-sample",
        "_format_columns": None,
        "_format_kwargs": {},
        "_format_type": None,
        "_output_all_columns": False,
        "_split": "test",
    }
    (saved / "dataset_info.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    (saved / "state.json").write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
