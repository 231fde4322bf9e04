"""The hand-written alternative to the JDBC source: psycopg reads the table in pages of LIMIT rows
by id (keyset, as incrementing mode does) and confluent-kafka produces each row as JSON, keyed by
its id, then flushes. Prints {"wall": s, "cpu": s, "records": n} of the loop (start-up and imports
left out, as for the other contenders).

usage: jdbc_psycopg_baseline.py DSN TABLE BOOTSTRAP TOPIC LIMIT
"""
import json
import sys
import time

import psycopg
from confluent_kafka import Producer


def main():
    dsn, table, bootstrap, topic, limit = sys.argv[1:6]
    limit = int(limit)
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "enable.idempotence": True})
    started, cpu0 = time.monotonic(), time.process_time()
    records, last = 0, -1
    with psycopg.connect(dsn) as conn:
        while True:
            with conn.cursor() as cur:
                cur.execute(f'SELECT * FROM "{table}" WHERE id > %s ORDER BY id LIMIT %s', (last, limit))
                names = [d.name for d in cur.description]
                rows = cur.fetchall()
            conn.commit()
            if not rows:
                break
            for row in rows:
                value = json.dumps(dict(zip(names, row)), default=str)
                while True:
                    try:
                        producer.produce(topic, key=str(row[0]), value=value)
                        break
                    except BufferError:
                        producer.poll(0.01)
                producer.poll(0)
            records += len(rows)
            last = rows[-1][0]
    producer.flush()
    print(json.dumps({"wall": time.monotonic() - started, "cpu": time.process_time() - cpu0,
                      "records": records}))


main()
