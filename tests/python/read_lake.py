"""Reads a directory of Parquet files the way lake users do, and prints what each reader sees.

- pyarrow's dataset API, which takes the dataset's schema from one file (the first it finds);
- DuckDB's read_parquet with union_by_name, which unites every file's columns (directory names
  like `partition=0` are not read as columns here: only what the files hold counts).

Prints one JSON object: {"pyarrow": {"columns": [...], "rows": [...]}, "duckdb": {...}}, rows
sorted by "id". Python's json writes doubles in their shortest exact form.
"""
import json
import sys

import duckdb
import pyarrow.dataset as ds


def main(root):
    dataset = ds.dataset(root, format="parquet")
    table = dataset.to_table()
    rows = sorted(table.to_pylist(), key=lambda r: r["id"])
    out = {"pyarrow": {"columns": table.column_names, "rows": rows}}
    relation = duckdb.sql(
        f"select * from read_parquet('{root}/**/*.parquet', union_by_name = true, hive_partitioning = false)"
    )
    names = relation.columns
    rows = [dict(zip(names, r)) for r in relation.fetchall()]
    rows.sort(key=lambda r: r["id"])
    out["duckdb"] = {"columns": names, "rows": rows}
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1])
