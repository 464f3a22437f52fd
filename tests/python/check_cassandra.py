"""Checks the Cassandra sink's table against DuckDB's recomputation from silver.

    python3 check_cassandra.py OUTPUT_PATH HOST:PORT KEYSPACE TABLE [GOLD_TABLE]

Recomputes seed 002's 5-minute windows per (user_id, category) from silver's Parquet files with
DuckDB (count, sum, avg, max and min of amount, the merchants), reads the table with the DataStax
Python driver (cassandra-driver), and prints one JSON object: how many windows each side holds,
and up to five windows missing from the table, extra in it, or different (values compared with a
relative tolerance of 1e-9; merchants as sorted lists, null merchants left out: a Cassandra list
holds no null). Rows without a user_id or category are left out of the recomputation: Cassandra's
key cannot be null (the sink keeps them in the files only).

With GOLD_TABLE: that table against gold's Parquet files (gold in append mode: one row per card
and window), under "gold".
"""

import calendar
import glob
import json
import math
import os
import sys

import duckdb
from cassandra.cluster import Cluster

WINDOW_SECONDS = 300


def expected(output_path):
    files = parquet_files(output_path, "silver")
    rows = duckdb.sql(
        f"""
        SELECT user_id, category,
               epoch_ms(time_bucket(INTERVAL {WINDOW_SECONDS} SECOND, event_time)) AS window_start,
               count(*) AS transaction_count, sum(amount) AS total_amount,
               avg(amount) AS avg_amount, max(amount) AS max_amount, min(amount) AS min_amount,
               list(merchant ORDER BY merchant) FILTER (WHERE merchant IS NOT NULL) AS merchants
        FROM read_parquet({files!r}, union_by_name = true)
        WHERE user_id IS NOT NULL AND category IS NOT NULL
        GROUP BY ALL
        """
    ).fetchall()
    return {(r[0], r[1], r[2]): r[3:] for r in rows}


def parquet_files(output_path, layer):
    return [
        f
        for f in glob.glob(os.path.join(output_path, layer, "**", "*.parquet"), recursive=True)
        if "/_staging" not in f and "/_set_aside" not in f
    ]


def gold_expected(output_path):
    rows = duckdb.sql(
        f"""
        SELECT card_id, epoch_ms(window_start), epoch_ms(window_end), txn_count, sum_amount,
               avg_amount, max_amount
        FROM read_parquet({parquet_files(output_path, "gold")!r})
        WHERE card_id IS NOT NULL
        """
    ).fetchall()
    return rows


def query(contact, cql):
    """Every row of `cql`, read with the DataStax driver from the node at HOST:PORT."""
    host, port = contact.rsplit(":", 1)
    cluster = Cluster([host], port=int(port))
    try:
        return list(cluster.connect().execute(cql))
    finally:
        cluster.shutdown()


def gold_in_table(contact, keyspace, table):
    rows = query(
        contact,
        f"SELECT card_id, window_start, window_end, txn_count, sum_amount, avg_amount, max_amount "
        f"FROM {keyspace}.{table}",
    )
    return {
        (r.card_id, millis(r.window_start)): (millis(r.window_end), r.txn_count, r.sum_amount, r.avg_amount, r.max_amount)
        for r in rows
    }


def compare(want, got):
    missing = [k for k in want if k not in got]
    extra = [k for k in got if k not in want]
    different = [
        {"key": k, "expected": list(want[k]), "table": list(got[k])}
        for k in want
        if k in got and not same(want[k], got[k])
    ]
    return {
        "windows": len(want),
        "rows": len(got),
        "missing": [list(k) for k in missing[:5]],
        "missing_count": len(missing),
        "extra": [list(k) for k in extra[:5]],
        "extra_count": len(extra),
        "different": different[:5],
        "different_count": len(different),
    }


def millis(dt):
    """The driver's timestamps are naive datetimes in UTC."""
    return calendar.timegm(dt.utctimetuple()) * 1000 + dt.microsecond // 1000


def in_table(contact, keyspace, table):
    rows = query(
        contact,
        f"SELECT user_id, category, window_start, window_end, transaction_count, total_amount, "
        f"avg_amount, max_amount, min_amount, merchants FROM {keyspace}.{table}",
    )
    got = {}
    for r in rows:
        start, end = millis(r.window_start), millis(r.window_end)
        if end - start != WINDOW_SECONDS * 1000:
            got[(r.user_id, r.category, start)] = ("window_end", end)
            continue
        got[(r.user_id, r.category, start)] = (
            r.transaction_count,
            r.total_amount,
            r.avg_amount,
            r.max_amount,
            r.min_amount,
            sorted(r.merchants or []),
        )
    return got


def same(a, b):
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if isinstance(x, float) or isinstance(y, float):
            if x is None or y is None:
                if x is not y:
                    return False
            elif not math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-9):
                return False
        elif isinstance(x, list) or isinstance(y, list):
            if sorted(x or []) != sorted(y or []):
                return False
        elif x != y:
            return False
    return True


def main():
    output_path, contact, keyspace, table = sys.argv[1:5]
    want = expected(output_path)
    report = compare(want, in_table(contact, keyspace, table))
    report["transactions"] = sum(v[0] for v in want.values())
    if len(sys.argv) > 5:
        gold_rows = gold_expected(output_path)
        gold_want = {(r[0], r[1]): tuple(r[2:]) for r in gold_rows}
        report["gold"] = compare(gold_want, gold_in_table(contact, keyspace, sys.argv[5]))
        report["gold"]["file_rows"] = len(gold_rows)
    print(json.dumps(report, default=str))


if __name__ == "__main__":
    main()
