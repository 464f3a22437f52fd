"""Checks the events dataset's output as users read it (DuckDB, Hive partitioning).

Usage: check_events.py OUTPUT_PATH VALID_EVENTS

- every valid event is in events/id=<id>/ once, with id from the folder, key, ts, value, source;
- the last update of each 10-second window that the final watermark closed equals DuckDB's own
  recomputation from the partitioned files (count and average), for a run without late rows.
"""
import json
import pathlib
import sys

import duckdb

out, valid = pathlib.Path(sys.argv[1]), int(sys.argv[2])
con = duckdb.connect()
events = f"read_parquet('{out}/events/*/*.parquet', hive_partitioning = true)"
columns = [r[0] for r in con.sql(f"DESCRIBE SELECT * FROM {events}").fetchall()]
assert columns == ["key", "ts", "value", "source", "id"], columns
((rows, ids, keyed),) = con.sql(
    f"SELECT count(*), count(DISTINCT id), count(*) FILTER (WHERE key = CAST(id AS VARCHAR)) FROM {events}"
).fetchall()
assert rows == valid, (rows, valid)
assert ids == 10 and keyed == rows, (ids, keyed)

commits = sorted((out / "_chk_events" / "commits").iterdir(), key=lambda p: int(p.name))
# Each checkpoint file: `PCK1`, a CRC-32, then the JSON.
entries = [json.loads(p.read_bytes()[8:]) for p in commits]
assert sum(e["late_rows"] for e in entries) == 0, "this check needs a run without late rows"
watermark = entries[-1]["watermark"]

recomputed = dict(
    ((id_, start), (n, avg))
    for id_, start, n, avg in con.sql(
        f"""SELECT id, epoch_us(ts) // 10000000 * 10000000 AS start, count(*), avg(value)
            FROM {events} GROUP BY ALL"""
    ).fetchall()
)
last = con.sql(
    f"""SELECT id, epoch_us(window_start), epoch_us(window_end), event_count, avg_value
        FROM (SELECT *, row_number() OVER (
                  PARTITION BY id, window_start
                  ORDER BY CAST(regexp_extract(filename, '_(\\d+)\\.parquet$', 1) AS BIGINT) DESC) AS rn
              FROM read_parquet('{out}/events_agg/*.parquet', filename = true))
        WHERE rn = 1"""
).fetchall()
closed = [r for r in last if r[2] <= watermark]
assert len(closed) >= 20, f"windows closed by the final watermark: {len(closed)}"
for id_, start, _end, n, avg in closed:
    want_n, want_avg = recomputed[(id_, start)]
    assert n == want_n and abs(avg - want_avg) < 1e-9, (id_, start, n, avg, want_n, want_avg)
assert {(r[0], r[1]) for r in last} == set(recomputed), "a window per id and 10 s, no other"
print(f"events: {rows} rows over {ids} ids; {len(closed)} closed windows equal DuckDB's recomputation")
