"""The hand-written baseline of the S3 Parquet benchmark.

What people write without a connector runtime: a confluent-kafka consumer that decodes each JSON
value, builds a Parquet file per Kafka partition every FLUSH records with pyarrow (snappy) and uploads
it with boto3, then commits the partition's offset synchronously. Prints one JSON line with what it
measured about itself: records, value bytes, wall seconds from the first record to the last
commit, CPU seconds and peak RSS.

usage: s3_parquet_baseline.py BOOTSTRAP TOPIC RECORDS FLUSH ENDPOINT BUCKET ACCESS_KEY SECRET_KEY
"""

import io
import json
import resource
import sys
import time

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
from botocore.config import Config
from confluent_kafka import Consumer, TopicPartition


def main() -> None:
    bootstrap, topic, records, flush, endpoint, bucket, key_id, secret = sys.argv[1:9]
    records, flush = int(records), int(flush)
    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}),
    )
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"baseline-{time.time_ns()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            # The same short fetch wait as the other consumers (the test broker answers late otherwise).
            "fetch.wait.max.ms": 50,
        }
    )
    consumer.subscribe([topic])
    buffers: dict[int, list] = {}
    starts: dict[int, int] = {}
    done = 0
    value_bytes = 0
    first = None
    while done < records:
        for msg in consumer.consume(num_messages=1000, timeout=1.0):
            if msg.error():
                continue
            if first is None:
                first = time.monotonic()
            p = msg.partition()
            value = msg.value()
            value_bytes += len(value)
            rows = buffers.setdefault(p, [])
            if not rows:
                starts[p] = msg.offset()
            rows.append(json.loads(value))
            if len(rows) >= flush:
                table = pa.Table.from_pylist(rows)
                out = io.BytesIO()
                pq.write_table(table, out, compression="snappy")
                key = f"baseline/{topic}/partition={p}/{topic}+{p}+{starts[p]:010d}.parquet"
                s3.put_object(Bucket=bucket, Key=key, Body=out.getvalue())
                consumer.commit(offsets=[TopicPartition(topic, p, msg.offset() + 1)], asynchronous=False)
                done += len(rows)
                buffers[p] = []
    wall = time.monotonic() - first
    usage = resource.getrusage(resource.RUSAGE_SELF)
    consumer.close()
    print(
        json.dumps(
            {
                "records": done,
                "bytes": value_bytes,
                "wall": wall,
                "cpu": usage.ru_utime + usage.ru_stime,
                "peak_rss_mib": usage.ru_maxrss / 1024,
            }
        )
    )


if __name__ == "__main__":
    main()
