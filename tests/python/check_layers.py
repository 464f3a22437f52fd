"""Reads every layer written by the pipeline with pandas and with DuckDB, as users do, and checks
column names, types (tz-aware UTC timestamps) and row counts; then recomputes gold from silver
with DuckDB and compares it with the gold files value for value.

Usage: python3 check_layers.py OUTPUT_PATH EXPECTED_MESSAGES EXPECTED_BAD
"""

import json
import math
import pathlib
import sys

import duckdb
import pandas as pd

out = pathlib.Path(sys.argv[1])
expected_total = int(sys.argv[2])
expected_bad = int(sys.argv[3])

STRING = "string"
UTC = "datetime64[us, UTC]"
SCHEMAS = {
    "bronze": {"key": STRING, "value": STRING, "kafka_ts": UTC, "topic": STRING, "partition": "int32", "offset": "int64"},
    "silver": {
        "txn_id": STRING, "user_id": STRING, "card_id": STRING, "merchant": STRING, "category": STRING,
        "amount": "float64", "currency": STRING, "status": STRING, "city": STRING, "country": STRING,
        "lat": "float64", "lon": "float64", "kafka_ts": UTC, "json_str": STRING, "event_time": UTC,
    },
    "quarantine": {
        "bad_json": STRING, "bad_ingest_ts": UTC, "reason": STRING, "topic": STRING, "partition": "int32",
        "offset": "int64", "key": STRING,
    },
    "gold": {
        "card_id": STRING, "window_start": UTC, "window_end": UTC, "txn_count": "int64",
        "sum_amount": "float64", "avg_amount": "float64", "max_amount": "float64",
    },
}
DUCK_TYPES = {STRING: "VARCHAR", UTC: "TIMESTAMP WITH TIME ZONE", "int32": "INTEGER", "int64": "BIGINT", "float64": "DOUBLE"}


def pandas_kind(dtype) -> str:
    text = str(dtype)
    if text in ("object", "str", "string") or text.startswith("string"):
        return STRING
    return text


frames = {}
for layer, schema in SCHEMAS.items():
    if not list((out / layer).glob("*.parquet")):
        # A layer with no rows in any batch has no file: quarantine of a run without bad
        # messages, gold of a run too short for the watermark to close a window (checked below).
        assert (layer == "quarantine" and expected_bad == 0) or layer == "gold", (layer, "no files")
        frames[layer] = pd.DataFrame({c: pd.Series(dtype="object") for c in schema})
        print(f"{layer}: no files (no rows in any batch)")
        continue
    df = pd.read_parquet(out / layer)  # pandas skips _staging (names starting with _)
    assert list(df.columns) == list(schema), (layer, list(df.columns))
    for column, kind in schema.items():
        assert pandas_kind(df[column].dtype) == kind, (layer, column, df[column].dtype)
    duck = duckdb.sql(f"DESCRIBE SELECT * FROM read_parquet('{out / layer}/*.parquet')").fetchall()
    assert [(name, typ) for name, typ, *_ in duck] == [(c, DUCK_TYPES[k]) for c, k in schema.items()], (layer, duck)
    count = duckdb.sql(f"SELECT count(*) FROM read_parquet('{out / layer}/*.parquet')").fetchall()[0][0]
    assert count == len(df), (layer, count, len(df))
    frames[layer] = df
    print(f"{layer}: {len(df)} rows, columns and types as specified (pandas and DuckDB)")

csv = pd.concat([pd.read_csv(p) for p in sorted((out / "raw_csv").glob("*.csv"))])
assert list(csv.columns) == ["txn_id", "event_ts", "user_id", "card_id", "merchant", "category", "amount",
                             "currency", "status", "city", "country", "lat", "lon"], list(csv.columns)
print(f"raw_csv: {len(csv)} rows")

assert len(frames["bronze"]) == expected_total, (len(frames["bronze"]), expected_total)
assert len(frames["quarantine"]) == expected_bad, (len(frames["quarantine"]), expected_bad)
assert len(frames["silver"]) == expected_total - expected_bad
assert len(csv) == len(frames["silver"])
assert frames["quarantine"]["reason"].notna().all() and (frames["quarantine"]["reason"].str.len() > 0).all()
assert frames["bronze"][["partition", "offset"]].duplicated().sum() == 0
assert frames["silver"]["txn_id"].duplicated().sum() == 0
assert frames["silver"]["event_time"].dt.tz is not None
if expected_bad == 0:
    # Silver's json_str is then copied from bronze's encoded value chunk: the same messages.
    assert sorted(frames["silver"]["json_str"]) == sorted(frames["bronze"]["value"])
    print("silver json_str: the same messages as bronze value")
else:
    # With rejects, bronze's pages of valid rows are copied: each silver row's json_str is
    # bronze's value at its offset, and the rejects' values are in no silver row.
    bronze_json = set(frames["bronze"]["value"].dropna())
    bad_json = set(frames["quarantine"]["bad_json"].dropna())
    silver_json = list(frames["silver"]["json_str"])
    assert all(j in bronze_json for j in silver_json)
    assert not (set(silver_json) & bad_json)
    assert len(set(silver_json)) == len(silver_json) == len(frames["silver"])
    print(f"silver json_str: {len(silver_json)} of bronze's values, none of the {len(bad_json)} rejects'")

# Gold recomputed from silver. A row is late when its window ended at or before the watermark in
# force when its batch started (the previous batch's commit); late rows are counted, not in gold.
chk = out / "_chk"
# Each checkpoint file: `PCK1`, a CRC-32, then the JSON.
commits = {int(p.name): json.loads(p.read_bytes()[8:]) for p in (chk / "commits").iterdir() if p.name.isdigit()}
last = max(commits)
final_watermark = commits[last]["watermark"]
duckdb.sql("CREATE TABLE wm (batch BIGINT, watermark_us BIGINT)")
for b in sorted(commits):
    previous = commits.get(b - 1, {}).get("watermark")
    duckdb.sql(f"INSERT INTO wm VALUES ({b}, {previous if previous is not None else 'NULL'})")
window_us = 60_000_000
recomputed = duckdb.sql(f"""
    WITH s AS (
        SELECT card_id, amount, epoch_us(event_time) AS t,
               CAST(regexp_extract(filename, '_(\\d+)\\.parquet$', 1) AS BIGINT) AS batch
        FROM read_parquet('{out}/silver/*.parquet', filename = true)
    ), w AS (
        SELECT s.*, t - (t % {window_us}) AS ws, wm.watermark_us
        FROM s JOIN wm USING (batch)
    ), on_time AS (
        SELECT * FROM w WHERE watermark_us IS NULL OR ws + {window_us} > watermark_us
    )
    SELECT card_id, ws, count(*) AS n, sum(amount) AS s, max(amount) AS m
    FROM on_time
    WHERE ws + {window_us} <= {final_watermark}
    GROUP BY card_id, ws
    ORDER BY card_id, ws
""").fetchall()
late_counted = sum(c["late_rows"] for c in commits.values())
late_found = duckdb.sql(f"""
    SELECT count(*) FROM (
        SELECT epoch_us(event_time) AS t, CAST(regexp_extract(filename, '_(\\d+)\\.parquet$', 1) AS BIGINT) AS batch
        FROM read_parquet('{out}/silver/*.parquet', filename = true)
    ) s JOIN wm USING (batch)
    WHERE watermark_us IS NOT NULL AND t - (t % {window_us}) + {window_us} <= watermark_us
""").fetchall()[0][0]
assert late_found == late_counted, (late_found, late_counted)

if list((out / "gold").glob("*.parquet")):
    gold = duckdb.sql(f"""
        SELECT card_id, epoch_us(window_start), txn_count, sum_amount, max_amount, avg_amount
        FROM read_parquet('{out}/gold/*.parquet') ORDER BY card_id, window_start
    """).fetchall()
    assert len(gold) == len(recomputed) > 0, (len(gold), len(recomputed))
else:
    gold = []
    assert len(recomputed) == 0, ("no gold file, but the watermark closed windows", len(recomputed))
for g, r in zip(gold, recomputed):
    assert g[0] == r[0] and g[1] == r[1] and g[2] == r[2], (g, r)
    assert math.isclose(g[3], r[3], rel_tol=1e-12, abs_tol=1e-9), (g, r)
    assert g[4] == r[4], (g, r)
    assert math.isclose(g[5], r[3] / r[2], rel_tol=1e-12), (g, r)
print(f"gold: {len(gold)} windows equal DuckDB's recomputation from silver; {late_counted} late rows counted and found")
print("all layers check out")
