"""Reads the Delta tables a processor wrote (OUTPUT_FORMAT=delta) with one reader, and prints what
it saw as one JSON object per table: rows, distinct (partition, offset) pairs, distinct ids, the
date partitions and the table version. The integration tests compare the readers' answers with
each other and with the topic.

usage: check_delta.py OUTPUT_PATH READER TABLE... [windows]
       check_delta.py OUTPUT_PATH READER --rows TABLE COLUMN,COLUMN...
"windows" adds gold's windows and the 1-minute windows per card recomputed from silver.
--rows prints the table's rows (those columns; times as microseconds since the epoch, lists as
their length), sorted, as a JSON list: the tests compare them with what was produced.
READER: deltalake (the deltalake package), polars (read_delta), duckdb (delta_scan; DuckDB's
delta extension from the duckdb-extension-delta package, which matches duckdb 1.5: see
scripts/test.sh for the separate install), spark (pyspark 3.5 with delta-spark 3.3, its jars
resolved from Maven Central at the first run; local tables only: s3a:// needs hadoop-aws).
OUTPUT_PATH may be s3://bucket/prefix: each reader then reads the object store named by the
AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY variables.
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


def windows(rows):
    """(card, window start in epoch seconds, count, sum rounded) rows, sorted: gold's windows, or
    the same recomputed from silver, as the test compares them."""
    return sorted([str(card), int(start), int(count), round(float(total), 4)] for card, start, count, total in rows)


def spark_session():
    from delta import configure_spark_with_delta_pip
    from pyspark.sql import SparkSession

    builder = (
        SparkSession.builder.master("local[1]")
        .appName("check_delta")
        .config("spark.sql.extensions", "io.delta.sql.DeltaSparkSessionExtension")
        .config("spark.sql.catalog.spark_catalog", "org.apache.spark.sql.delta.catalog.DeltaCatalog")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "1")
    )
    spark = configure_spark_with_delta_pip(builder).getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def with_spark(path):
    from pyspark.sql import functions as F

    df = spark_session().read.format("delta").load(os.path.abspath(path))
    cols = df.columns
    rows = df.count()
    pairs = df.select("partition", "offset").distinct().count() if "offset" in cols else None
    ids = df.select("txn_id").distinct().count() if "txn_id" in cols else None
    dates = {str(r[0]) for r in df.select(F.col("date")).distinct().collect()} if "date" in cols else set()
    return summary(cols, rows, pairs, ids, dates, None)


def storage_options():
    """The object store's settings, for the deltalake package and polars."""
    keys = ["AWS_ENDPOINT_URL", "AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ALLOW_HTTP"]
    return {k: os.environ[k] for k in keys if k in os.environ}


def remote(path):
    return path.startswith("s3://")


def with_deltalake(path):
    from deltalake import DeltaTable

    table = DeltaTable(path, storage_options=storage_options() if remote(path) else None)
    data = table.to_pyarrow_table()
    cols = data.column_names
    col = lambda c: data.column(c).to_pylist()
    pairs = len(set(zip(col("partition"), col("offset")))) if "offset" in cols else None
    ids = len(set(col("txn_id"))) if "txn_id" in cols else None
    dates = set(col("date")) if "date" in cols else set()
    return summary(cols, data.num_rows, pairs, ids, dates, table.version())


def windows_with_deltalake(path):
    """Gold's windows, and the 1-minute windows per card recomputed from silver (pyarrow)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    from deltalake import DeltaTable

    options = storage_options() if remote(path) else None
    gold = DeltaTable(path + "/gold", storage_options=options).to_pyarrow_table()
    silver = DeltaTable(path + "/silver", storage_options=options).to_pyarrow_table()
    epoch = lambda times: pc.cast(pc.cast(times, pa.timestamp("s", tz="UTC"), safe=False), pa.int64())
    minute = pc.floor_temporal(silver.column("event_time"), unit="minute")
    grouped = (
        silver.append_column("ws", minute)
        .group_by(["card_id", "ws"])
        .aggregate([("amount", "count"), ("amount", "sum")])
    )
    recomputed = zip(
        grouped.column("card_id").to_pylist(),
        epoch(grouped.column("ws")).to_pylist(),
        grouped.column("amount_count").to_pylist(),
        grouped.column("amount_sum").to_pylist(),
    )
    kept = zip(
        gold.column("card_id").to_pylist(),
        epoch(gold.column("window_start")).to_pylist(),
        gold.column("txn_count").to_pylist(),
        gold.column("sum_amount").to_pylist(),
    )
    return {"gold": windows(kept), "recomputed": windows(recomputed)}


def windows_with_polars(path):
    import polars as pl

    options = storage_options() if remote(path) else None
    gold = pl.read_delta(path + "/gold", storage_options=options)
    silver = pl.read_delta(path + "/silver", storage_options=options)
    grouped = silver.group_by(["card_id", pl.col("event_time").dt.truncate("1m").alias("ws")]).agg(
        pl.col("amount").count().alias("n"), pl.col("amount").sum().alias("total")
    )
    epoch = lambda c: pl.col(c).dt.epoch("s")
    recomputed = grouped.select("card_id", epoch("ws"), "n", "total").rows()
    kept = gold.select("card_id", epoch("window_start"), "txn_count", "sum_amount").rows()
    return {"gold": windows(kept), "recomputed": windows(recomputed)}


def windows_with_duckdb(path):
    con, scan = duckdb_scan(path)
    kept = con.sql(
        f"SELECT card_id, epoch(window_start), txn_count, sum_amount FROM {scan('gold')}"
    ).fetchall()
    recomputed = con.sql(
        f"""SELECT card_id, epoch(time_bucket(INTERVAL 1 minute, event_time)) AS ws, count(amount), sum(amount)
        FROM {scan('silver')} GROUP BY card_id, ws"""
    ).fetchall()
    return {"gold": windows(kept), "recomputed": windows(recomputed)}


def with_polars(path):
    import polars as pl

    df = pl.read_delta(path, storage_options=storage_options() if remote(path) else None)
    cols = df.columns
    pairs = df.select(["partition", "offset"]).unique().height if "offset" in cols else None
    ids = df["txn_id"].n_unique() if "txn_id" in cols else None
    dates = set(df["date"].unique().to_list()) if "date" in cols else set()
    return summary(cols, df.height, pairs, ids, dates, None)


def duckdb_scan(path):
    """A DuckDB connection that reads Delta tables (and S3), and the delta_scan of a table."""
    import duckdb
    import duckdb_extension_delta
    import duckdb_extension_httpfs

    def extension(package, name):
        folder = os.path.dirname(package.__file__)
        return glob.glob(os.path.join(folder, "extensions", "*", f"{name}.duckdb_extension"))[0]

    con = duckdb.connect()
    con.sql(f"LOAD '{extension(duckdb_extension_delta, 'delta')}'")
    if remote(path):
        con.sql(f"LOAD '{extension(duckdb_extension_httpfs, 'httpfs')}'")
        endpoint = os.environ["AWS_ENDPOINT_URL"]
        con.sql(
            f"""CREATE SECRET lake (TYPE s3, KEY_ID '{os.environ["AWS_ACCESS_KEY_ID"]}',
            SECRET '{os.environ["AWS_SECRET_ACCESS_KEY"]}', REGION '{os.environ.get("AWS_REGION", "us-east-1")}',
            ENDPOINT '{endpoint.split("://", 1)[1]}', URL_STYLE 'path',
            USE_SSL {'false' if endpoint.startswith('http://') else 'true'})"""
        )
    root = path if remote(path) else os.path.abspath(path)
    return con, lambda table: f"delta_scan('{root}/{table}')"


def with_duckdb(path):
    parent, table = path.rstrip("/").rsplit("/", 1)
    con, scan = duckdb_scan(parent)
    scan = scan(table)
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


def rows_with_deltalake(path, columns):
    import pyarrow as pa
    import pyarrow.compute as pc
    from deltalake import DeltaTable

    data = DeltaTable(path, storage_options=storage_options() if remote(path) else None).to_pyarrow_table()
    picked = []
    for name in columns:
        column = data.column(name)
        if pa.types.is_timestamp(column.type):
            column = pc.cast(pc.cast(column, pa.timestamp("us", tz="UTC")), pa.int64())
        elif pa.types.is_date(column.type):
            column = pc.cast(column, pa.string())
        elif pa.types.is_list(column.type):
            column = pc.list_value_length(column)
        picked.append(column.to_pylist())
    return [list(row) for row in zip(*picked)]


def rows_with_polars(path, columns):
    import polars as pl

    df = pl.read_delta(path, storage_options=storage_options() if remote(path) else None)
    exprs = []
    for name in columns:
        kind = df.schema[name]
        if isinstance(kind, pl.Datetime):
            exprs.append(pl.col(name).dt.epoch("us"))
        elif kind == pl.Date:
            exprs.append(pl.col(name).cast(pl.String))
        elif isinstance(kind, pl.List):
            exprs.append(pl.col(name).list.len().cast(pl.Int64))
        else:
            exprs.append(pl.col(name))
    return [list(row) for row in df.select(exprs).rows()]


def rows_with_duckdb(path, columns):
    parent, table = path.rstrip("/").rsplit("/", 1)
    con, scan = duckdb_scan(parent)
    kinds = {c[0]: c[1] for c in con.sql(f"DESCRIBE SELECT * FROM {scan(table)}").fetchall()}
    exprs = []
    for name in columns:
        kind = kinds[name].upper()
        if kind.startswith("TIMESTAMP"):
            exprs.append(f'epoch_us("{name}")')
        elif kind == "DATE":
            exprs.append(f'CAST("{name}" AS VARCHAR)')
        elif kind.endswith("[]"):
            exprs.append(f'CAST(len("{name}") AS BIGINT)')
        else:
            exprs.append(f'"{name}"')
    return [list(row) for row in con.sql(f"SELECT {', '.join(exprs)} FROM {scan(table)}").fetchall()]


def main():
    # Only the JSON goes to stdout: what the readers print there themselves (Spark's JVM, its jar
    # resolution) goes to stderr.
    result = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = result
    out, reader = sys.argv[1].rstrip("/"), sys.argv[2]
    if sys.argv[3] == "--rows":
        table, columns = sys.argv[4], sys.argv[5].split(",")
        read = {"deltalake": rows_with_deltalake, "polars": rows_with_polars, "duckdb": rows_with_duckdb}[reader]
        rows = read(out + "/" + table, columns)
        rows.sort(key=lambda row: [(v is None, v if v is not None else 0) for v in row])
        print(json.dumps(rows))
        return
    tables = sys.argv[3:]
    read = {"deltalake": with_deltalake, "polars": with_polars, "duckdb": with_duckdb, "spark": with_spark}[reader]
    seen = {table: read(out + "/" + table) for table in tables if table != "windows"}
    if "windows" in tables:
        # Gold's windows next to the same windows recomputed from silver, by the same reader.
        recompute = {"deltalake": windows_with_deltalake, "polars": windows_with_polars, "duckdb": windows_with_duckdb}
        seen["windows"] = recompute[reader](out)
    print(json.dumps(seen))


if __name__ == "__main__":
    main()
    # The deltalake package (1.6.6) sometimes aborts while the interpreter shuts down ("terminate
    # called without an active exception", exit 134) after its work is done and printed: leave
    # without the interpreter's shutdown.
    sys.stdout.flush()
    os._exit(0)
