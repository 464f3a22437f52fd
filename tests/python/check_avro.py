"""Reads a topic's Avro values with Confluent's own client, independently of the pipeline.

    python3 check_avro.py BOOTSTRAP REGISTRY_URL TOPIC [ID_FIELD]

Consumes every message of TOPIC from the beginning (confluent-kafka's Consumer, read_committed)
and hands each Confluent-framed value (magic byte 0) to confluent-kafka's AvroDeserializer, which
fetches the writer schema by id from the registry. Prints one JSON object: how many messages the
topic holds, how many are framed, how many the deserializer read, the errors it raised (by
message, first five), and the ID_FIELD (default txn_id) of every record it read.
"""

import json
import sys

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext


def main():
    bootstrap, registry_url, topic = sys.argv[1:4]
    id_field = sys.argv[4] if len(sys.argv) > 4 else "txn_id"
    registry = SchemaRegistryClient({"url": registry_url})
    # The topic's subject (TopicNameStrategy); the default (ASSOCIATED) asks an API that only
    # Confluent's own registry serves.
    deserializer = AvroDeserializer(registry, conf={"subject.name.strategy.type": "TOPIC"})
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "check-avro",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            # The end of a partition is an event: a transactional topic's last offset is a
            # commit marker, never delivered.
            "enable.partition.eof": True,
        }
    )
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    ends = {}
    for p in partitions:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
        if high > low:
            ends[p] = high
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in ends])
    messages = framed = 0
    ids, errors = [], []
    while ends:
        m = consumer.poll(30)
        if m is None:
            raise SystemExit(f"no message for 30 s; partitions left: {ends}")
        if m.error():
            if m.error().code() == KafkaError._PARTITION_EOF:
                ends.pop(m.partition(), None)
            continue
        messages += 1
        value = m.value()
        if not value or value[0] != 0 or len(value) < 5:
            continue
        framed += 1
        try:
            record = deserializer(value, SerializationContext(topic, MessageField.VALUE))
            ids.append(record[id_field])
        except Exception as e:  # noqa: BLE001 - every failure is reported, by offset
            errors.append(f"{m.partition()}:{m.offset()}: {type(e).__name__}: {e}")
    consumer.close()
    print(
        json.dumps(
            {
                "messages": messages,
                "framed": framed,
                "read": len(ids),
                "errors": len(errors),
                "first_errors": errors[:5],
                "ids": ids,
            }
        )
    )


if __name__ == "__main__":
    main()
