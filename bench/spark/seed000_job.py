"""Seed 000's Spark Structured Streaming job, rewritten for the side-by-side benchmark.

It does what the seed's spark/app.py does to the `transactions` topic, so that BENCHMARKS.md can
set the Rust processor beside Spark on the same broker and the same records:

- five streaming queries (bronze, quarantine, silver, gold, raw_csv), each with its own Kafka
  source. The seed built them all from one `readStream...load()` DataFrame, but every
  `writeStream.start()` is a query of its own that reads the topic itself, so Spark reads each
  record five times. That is the cost we compare against, so it is kept (the Rust processor reads
  once per batch and fans out);
- the seed's compact writer: `foreachBatch`, `coalesce(1)`, write into a staging folder, rename
  the single part file to `<prefix>_<YYYYmmdd_HHMMSS>_<batchId>.<ext>`, delete the staging folder,
  optionally prune to the newest N files;
- the same schema, validation, event-time parsing, watermark, windows and columns, and Spark's
  defaults where the seed kept them (Snappy, timestamps as INT96, HDFS-backed state store for
  gold, Hadoop's .crc files beside each file).

What differs from the seed, for a benchmark that ends by itself: the trigger is availableNow
(instead of processingTime "30 seconds"), so each query processes what the topic holds when it
starts, in batches of at most --max-offsets-per-trigger, then stops; the master is local[2] (the
seed ran a standalone master and one 2-core worker: more JVMs, the same two cores); retention of
old files is off by default (the seed kept 48; pruning while counting would lose rows).

Run by scripts/bench-spark.sh (spark-submit with the Kafka connector's jars); it can also be run
as `python3 bench/spark/seed000_job.py --bootstrap HOST:PORT --output DIR` with
PYSPARK_SUBMIT_ARGS="--jars ... pyspark-shell".
"""

import argparse
import json
import os
import sys
import time
from datetime import datetime, timezone

from pyspark.sql import SparkSession
from pyspark.sql.functions import (
    avg,
    coalesce,
    col,
    count,
    from_json,
    max as max_,
    regexp_replace,
    sum as sum_,
    to_timestamp,
    window,
)
from pyspark.sql.types import DoubleType, StringType, StructField, StructType

# The seed's message schema: every field nullable, so from_json never rejects a missing field;
# validation below decides what is a transaction.
SCHEMA = StructType(
    [
        StructField("txn_id", StringType()),
        StructField("event_ts", StringType()),
        StructField("user_id", StringType()),
        StructField("card_id", StringType()),
        StructField("merchant", StringType()),
        StructField("category", StringType()),
        StructField("amount", DoubleType()),
        StructField("currency", StringType()),
        StructField("status", StringType()),
        StructField("city", StringType()),
        StructField("country", StringType()),
        StructField("lat", DoubleType()),
        StructField("lon", DoubleType()),
    ]
)

RAW_CSV_COLUMNS = [
    "txn_id", "event_ts", "user_id", "card_id", "merchant", "category",
    "amount", "currency", "status", "city", "country", "lat", "lon",
]

# (layer folder, file name prefix, format), in the order the seed started its queries.
LAYERS = [
    ("bronze", "bronze", "parquet"),
    ("quarantine", "quarantine", "parquet"),
    ("silver", "silver", "parquet"),
    ("gold", "gold", "parquet"),
    ("raw_csv", "raw", "csv"),
]


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--bootstrap", required=True, help="Kafka bootstrap servers, HOST:PORT[,...]")
    p.add_argument("--output", required=True, help="output folder (layers, and checkpoints in _chk)")
    p.add_argument("--topic", default="transactions")
    p.add_argument("--max-offsets-per-trigger", type=int, default=100_000,
                   help="records per batch over all partitions (the seed's .env had 5000); 0 = no limit")
    p.add_argument("--shuffle-partitions", type=int, default=4,
                   help="spark.sql.shuffle.partitions (the seed's SPARK_SQL_SHUFFLE_PARTITIONS: 4); "
                        "only gold shuffles")
    p.add_argument("--max-files-per-sink", type=int, default=0,
                   help="keep the newest N files per layer as the seed did (it kept 48); 0 = keep all")
    p.add_argument("--fail-on-data-loss", default="false", choices=["true", "false"],
                   help="the Kafka source's failOnDataLoss (the seed's .env: false)")
    p.add_argument("--master", default="local[2]",
                   help="only when run with plain python3 (spark-submit sets its own)")
    p.add_argument("--driver-memory", default="2g",
                   help="only when run with plain python3 (spark-submit sets its own)")
    p.add_argument("--summary-json", help="also write the row counts and timings to this file")
    return p.parse_args(argv)


def hadoop_fs(spark):
    """Hadoop's FileSystem, as the seed used for its renames (works for any URI Spark writes to)."""
    jvm = spark._jvm
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    return jvm.org.apache.hadoop.fs.FileSystem.get(conf), jvm.org.apache.hadoop.fs.Path


def write_single_file(batch_df, fmt, final_dir, staging_dir, name):
    """The seed's compact writer: one file per batch, whatever the number of input partitions.

    coalesce(1) is narrow, so it pulls the whole batch (Kafka read, parsing, encoding) into a
    single task; that is how the seed ran and part of what is being measured.
    """
    writer = batch_df.coalesce(1).write.mode("overwrite")
    if fmt == "csv":
        writer.option("header", "true").csv(staging_dir)
    else:
        writer.parquet(staging_dir)

    spark = batch_df.sparkSession
    fs, Path = hadoop_fs(spark)
    final = Path(final_dir)
    if not fs.exists(final):
        fs.mkdirs(final)
    ext = "." + fmt
    for status in fs.listStatus(Path(staging_dir)):
        part = status.getPath()
        if part.getName().startswith("part-") and part.getName().endswith(ext):
            target = Path(f"{final_dir.rstrip('/')}/{name}{ext}")
            if fs.exists(target):
                fs.delete(target, False)
            fs.rename(part, target)
            break
    fs.delete(Path(staging_dir), True)


def prune_old_files(spark, final_dir, keep):
    fs, Path = hadoop_fs(spark)
    final = Path(final_dir)
    if keep <= 0 or not fs.exists(final):
        return
    files = sorted((s for s in fs.listStatus(final) if s.isFile()),
                   key=lambda s: s.getModificationTime(), reverse=True)
    for s in files[keep:]:
        fs.delete(s.getPath(), False)


def start_compact_sink(df, *, name, prefix, fmt, output, keep_files):
    final_dir = os.path.join(output, name)
    # Under the layer folder like the seed's, and starting with "_" so readers skip it.
    staging_dir = os.path.join(final_dir, "_staging_" + name)

    def per_batch(batch_df, batch_id):
        # The seed named files from the wall clock (UTC) at write time, not from the batch plan.
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d_%H%M%S")
        write_single_file(batch_df, fmt, final_dir, staging_dir, f"{prefix}_{stamp}_{batch_id}")
        prune_old_files(batch_df.sparkSession, final_dir, keep_files)

    return (
        df.writeStream.queryName(name)
        .trigger(availableNow=True)
        .option("checkpointLocation", os.path.join(output, "_chk", name))
        .foreachBatch(per_batch)
        .start()
    )


def build_queries(spark, args):
    source = (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", args.bootstrap)
        .option("subscribe", args.topic)
        .option("startingOffsets", "earliest")
        .option("failOnDataLoss", args.fail_on_data_loss)
    )
    if args.max_offsets_per_trigger > 0:
        source = source.option("maxOffsetsPerTrigger", str(args.max_offsets_per_trigger))
    kafka_df = source.load()

    bronze = kafka_df.selectExpr(
        "CAST(key AS STRING) AS key",
        "CAST(value AS STRING) AS value",
        "timestamp AS kafka_ts",
        "topic",
        "partition",
        "offset",
    )

    parsed = kafka_df.selectExpr(
        "CAST(value AS STRING) AS json_str", "timestamp AS kafka_ts"
    ).select(from_json(col("json_str"), SCHEMA).alias("data"), "json_str", "kafka_ts")

    # Valid = parsed, with txn_id and event_ts; everything else is quarantined. Since Spark 3.0
    # from_json returns a struct of nulls (not null) for malformed JSON in PERMISSIVE mode, so it
    # is the txn_id/event_ts test that catches it. As in the seed, wrong-typed or unparseable
    # fields become nulls inside valid rows rather than quarantine.
    valid = (
        parsed.where(col("data").isNotNull())
        .select("data.*", "kafka_ts", "json_str")
        .where(col("txn_id").isNotNull() & col("event_ts").isNotNull())
    )
    quarantine = parsed.where(
        col("data").isNull() | col("data.txn_id").isNull() | col("data.event_ts").isNull()
    ).select(col("json_str").alias("bad_json"), col("kafka_ts").alias("bad_ingest_ts"))

    # The seed's three attempts, in its order: ISO 8601 as Spark casts it (this matches the
    # producer's "+00:00" form), then an explicit offset pattern, then no offset at all.
    event_time = coalesce(
        to_timestamp(col("event_ts")),
        to_timestamp(
            regexp_replace(regexp_replace(col("event_ts"), "T", " "), r"([+-]\d{2}):(\d{2})$", r"\1\2"),
            "yyyy-MM-dd HH:mm:ss.SSSSSSXXX",
        ),
        to_timestamp(regexp_replace(col("event_ts"), "T", " "), "yyyy-MM-dd HH:mm:ss.SSSSSS"),
    )
    silver = valid.withColumn("event_time", event_time).drop("event_ts")

    gold = (
        silver.withWatermark("event_time", "5 minutes")
        .groupBy(window(col("event_time"), "1 minute").alias("w"), col("card_id"))
        .agg(
            count("*").alias("txn_count"),
            sum_("amount").alias("sum_amount"),
            avg("amount").alias("avg_amount"),
            max_("amount").alias("max_amount"),
        )
        .select(
            "card_id",
            col("w.start").alias("window_start"),
            col("w.end").alias("window_end"),
            "txn_count", "sum_amount", "avg_amount", "max_amount",
        )
    )

    raw_csv = valid.select(*RAW_CSV_COLUMNS)

    frames = {"bronze": bronze, "quarantine": quarantine, "silver": silver, "gold": gold, "raw_csv": raw_csv}
    return [
        start_compact_sink(frames[name], name=name, prefix=prefix, fmt=fmt,
                           output=args.output, keep_files=args.max_files_per_sink)
        for name, prefix, fmt in LAYERS
    ]


def layer_files(folder, ext):
    if not os.path.isdir(folder):
        return []
    return sorted(
        os.path.join(folder, f) for f in os.listdir(folder)
        if f.endswith(ext) and not f.startswith(("_", "."))
    )


def count_rows(spark, output):
    """Rows per layer, read back from the files.

    pyarrow when it is installed: Parquet row counts come from the footers, so the read-back adds
    next to nothing to the CPU time the benchmark measures. Spark otherwise.
    """
    try:
        import pyarrow.csv as pacsv
        import pyarrow.parquet as pq
    except ImportError:
        pq = None
    counts = {}
    for name, _, fmt in LAYERS:
        files = layer_files(os.path.join(output, name), "." + fmt)
        if not files:
            counts[name] = 0
        elif pq is None:
            # DataFrameReader.parquet takes the paths as arguments (a list is one path of the
            # wrong type: ClassCastException ArrayList -> String); csv takes a list.
            if fmt == "csv":
                frame = spark.read.option("header", "true").csv(files)
            else:
                frame = spark.read.parquet(*files)
            counts[name] = frame.count()
        elif fmt == "csv":
            # Parsed, not line-counted: a quoted field may hold a newline.
            counts[name] = sum(
                sum(b.num_rows for b in pacsv.open_csv(f)) for f in files if os.path.getsize(f) > 0
            )
        else:
            counts[name] = sum(pq.read_metadata(f).num_rows for f in files)
    return counts, ("pyarrow" if pq is not None else "spark")


def main(argv):
    args = parse_args(argv)
    output = os.path.abspath(args.output)
    args.output = output

    builder = SparkSession.builder.appName("TransactionStream")
    if "PYSPARK_GATEWAY_PORT" not in os.environ:
        # Started with plain python3: pyspark launches the JVM from these settings. Under
        # spark-submit the JVM already runs with its own --master and --driver-memory.
        builder = builder.master(args.master).config("spark.driver.memory", args.driver_memory)
    spark = (
        builder.config("spark.sql.shuffle.partitions", str(args.shuffle_partitions))
        # The seed's containers ran in UTC; pin it so windows and event_time do not depend on the host.
        .config("spark.sql.session.timeZone", "UTC")
        # The seed's session settings.
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.files.ignoreMissingFiles", "true")
        .config("spark.sql.parquet.mergeSchema", "false")
        .config("spark.sql.parquet.filterPushdown", "true")
        # Only for the report below (batches and rows per query): 100 by default, fewer than the
        # batches of a large run with a small --max-offsets-per-trigger.
        .config("spark.sql.streaming.numRecentProgressUpdates", "2000")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("WARN")
    print(f"[spark] Spark {spark.version}, master {spark.sparkContext.master}, "
          f"shuffle partitions {args.shuffle_partitions}, maxOffsetsPerTrigger "
          f"{args.max_offsets_per_trigger or 'unlimited'}, topic {args.topic} at {args.bootstrap}", flush=True)

    started = time.monotonic()
    queries = build_queries(spark, args)
    # availableNow: each query stops by itself once it has caught up with the offsets it saw at
    # start. Waiting on each in turn waits for all; a failed query raises here.
    for q in queries:
        q.awaitTermination()
    processing = time.monotonic() - started

    per_query = {}
    for q in queries:
        # Only a report of what each query read; the counts below come from the files.
        progress = q.recentProgress
        per_query[q.name] = {
            "batches": len(progress),
            "input_rows": sum(p.get("numInputRows", 0) for p in progress),
            "batch_log": [
                {"batch": p["batchId"], "rows": p["numInputRows"], "start": p["timestamp"],
                 "duration_ms": p["durationMs"]}
                for p in progress
            ],
        }
    print(f"[spark] all queries finished in {processing:.2f} s (from the first start to the last stop)")
    for name, p in per_query.items():
        print(f"[spark]   query {name}: {p['input_rows']} records read from Kafka in {p['batches']} batches")

    counted = time.monotonic()
    counts, reader = count_rows(spark, output)
    count_secs = time.monotonic() - counted
    print(f"[spark] rows per layer (read back with {reader} in {count_secs:.2f} s): "
          + " ".join(f"{name}={n}" for name, n in counts.items()), flush=True)

    if args.summary_json:
        with open(args.summary_json, "w") as f:
            json.dump({"processing_seconds": processing, "count_seconds": count_secs,
                       "counted_with": reader, "rows": counts, "queries": per_query,
                       "spark_version": spark.version}, f, indent=2)
    spark.stop()


if __name__ == "__main__":
    main(sys.argv[1:])
