"""Reads the Delta tables a processor wrote (OUTPUT_FORMAT=delta) with one reader, and prints what
it saw as one JSON object per table: rows, distinct (partition, offset) pairs, distinct ids, the
date partitions and the table version. The integration tests compare the readers' answers with
each other and with the topic.

usage: check_delta.py OUTPUT_PATH READER TABLE...
READER: deltalake (the deltalake package), polars (read_delta), duckdb (delta_scan; DuckDB's
delta extension from the duckdb-extension-delta package, which matches duckdb 1.5: see
scripts/test.sh for the separate install).
"""

import glob
import json
import os
import sys


def summary(columns, rows, pairs, ids, dates, version):
    return {
        "rows": rows,
        "distinct_offsets": pairs,
        "distinct_ids": ids,
        "dates": sorted(str(d) for d in dates),
        "columns": columns,
        "version": version,
    }


def with_deltalake(path):
    from deltalake import DeltaTable

    table = DeltaTable(path)
    data = table.to_pyarrow_table()
    cols = data.column_names
    col = lambda c: data.column(c).to_pylist()
    pairs = len(set(zip(col("partition"), col("offset")))) if "offset" in cols else None
    ids = len(set(col("txn_id"))) if "txn_id" in cols else None
    dates = set(col("date")) if "date" in cols else set()
    return summary(cols, data.num_rows, pairs, ids, dates, table.version())


def with_polars(path):
    import polars as pl

    df = pl.read_delta(path)
    cols = df.columns
    pairs = df.select(["partition", "offset"]).unique().height if "offset" in cols else None
    ids = df["txn_id"].n_unique() if "txn_id" in cols else None
    dates = set(df["date"].unique().to_list()) if "date" in cols else set()
    return summary(cols, df.height, pairs, ids, dates, None)


def with_duckdb(path):
    import duckdb
    import duckdb_extension_delta

    extension = glob.glob(
        os.path.join(os.path.dirname(duckdb_extension_delta.__file__), "extensions", "*", "delta.duckdb_extension")
    )[0]
    con = duckdb.connect()
    con.sql(f"LOAD '{extension}'")
    scan = f"delta_scan('{os.path.abspath(path)}')"
    cols = [c[0] for c in con.sql(f"DESCRIBE SELECT * FROM {scan}").fetchall()]
    rows = con.sql(f"SELECT count(*) FROM {scan}").fetchall()[0][0]
    pairs = (
        con.sql(f'SELECT count(*) FROM (SELECT DISTINCT "partition", "offset" FROM {scan})').fetchall()[0][0]
        if "offset" in cols
        else None
    )
    ids = con.sql(f"SELECT count(DISTINCT txn_id) FROM {scan}").fetchall()[0][0] if "txn_id" in cols else None
    dates = {r[0] for r in con.sql(f"SELECT DISTINCT date FROM {scan}").fetchall()} if "date" in cols else set()
    return summary(cols, rows, pairs, ids, dates, None)


def main():
    out, reader, tables = sys.argv[1], sys.argv[2], sys.argv[3:]
    read = {"deltalake": with_deltalake, "polars": with_polars, "duckdb": with_duckdb}[reader]
    print(json.dumps({table: read(os.path.join(out, table)) for table in tables}))


if __name__ == "__main__":
    main()
