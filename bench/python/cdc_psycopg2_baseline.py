"""The hand-written alternative to the PostgreSQL CDC source: psycopg2's logical replication
connection streams the slot (pgoutput, protocol 1), each Insert/Update/Delete is decoded (its
columns' text by the Relation message's names) and produced as JSON with confluent-kafka, keyed by
the first column; the slot is confirmed after the producer's flush. Stops once `count` changes were
produced. Prints {"wall": s, "cpu": s, "records": n} of the loop (start-up left out).

usage: cdc_psycopg2_baseline.py DSN SLOT PUBLICATION BOOTSTRAP TOPIC COUNT
"""
import json
import struct
import sys
import time

import psycopg2
import psycopg2.extras
from confluent_kafka import Producer


def tuple_data(buf, at):
    (n,) = struct.unpack_from(">h", buf, at)
    at += 2
    values = []
    for _ in range(n):
        kind = buf[at : at + 1]
        at += 1
        if kind == b"t":
            (length,) = struct.unpack_from(">i", buf, at)
            at += 4
            values.append(bytes(buf[at : at + length]).decode())
            at += length
        else:
            values.append(None)
    return values, at


def main():
    dsn, slot, publication, bootstrap, topic, count = sys.argv[1:7]
    count = int(count)
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "enable.idempotence": True})
    conn = psycopg2.connect(dsn, connection_factory=psycopg2.extras.LogicalReplicationConnection)
    cur = conn.cursor()
    cur.start_replication(
        slot_name=slot,
        decode=False,
        options={"proto_version": "1", "publication_names": publication},
    )
    relations = {}
    state = {"records": 0, "started": None, "cpu0": None}

    def consume(msg):
        if state["started"] is None:
            state["started"], state["cpu0"] = time.monotonic(), time.process_time()
        buf = msg.payload
        tag = buf[0:1]
        if tag == b"R":
            (rel,) = struct.unpack_from(">I", buf, 1)
            at = 5
            at = buf.index(b"\0", at) + 1  # namespace
            at = buf.index(b"\0", at) + 1  # name
            at += 1  # replica identity
            (n,) = struct.unpack_from(">h", buf, at)
            at += 2
            names = []
            for _ in range(n):
                at += 1
                end = buf.index(b"\0", at)
                names.append(bytes(buf[at:end]).decode())
                at = end + 1 + 8
            relations[rel] = names
        elif tag in (b"I", b"U", b"D"):
            (rel,) = struct.unpack_from(">I", buf, 1)
            at = 5
            kind = buf[at : at + 1]
            at += 1
            op = {b"I": "c", b"U": "u", b"D": "d"}[tag]
            before = None
            if kind in (b"K", b"O"):
                before, at = tuple_data(buf, at)
                if tag == b"U":
                    at += 1  # 'N'
            after = None
            if tag != b"D":
                after, at = tuple_data(buf, at)
            names = relations[rel]
            row = dict(zip(names, after or before))
            value = json.dumps({"op": op, "after": row if after else None, "lsn": msg.data_start})
            while True:
                try:
                    producer.produce(topic, key=str(row[names[0]]), value=value)
                    break
                except BufferError:
                    producer.poll(0.01)
            producer.poll(0)
            state["records"] += 1
        elif tag == b"C":
            producer.flush()
            msg.cursor.send_feedback(flush_lsn=msg.data_start)
        if state["records"] >= count:
            raise StopIteration

    try:
        cur.consume_stream(consume)
    except StopIteration:
        pass
    producer.flush()
    print(json.dumps({"wall": time.monotonic() - state["started"],
                      "cpu": time.process_time() - state["cpu0"], "records": state["records"]}))


main()
