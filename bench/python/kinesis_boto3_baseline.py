"""The hand-written alternative to the Kinesis sink: boto3 put_records of 500 records, one call at a
time, of the same events the Rust benchmark sends (sluice_bench::s3_event), made before the clock
starts. Prints
{"wall": s, "cpu": s} of the loop (start-up and imports left out, as for the other contenders).

usage: kinesis_boto3_baseline.py ENDPOINT STREAM RECORDS KEYS
"""
import json
import sys
import time

import boto3


def event(i):
    pages = ["/", "/products/42", "/cart", "/checkout", "/search?q=usb"]
    countries = ["DE", "US", "FR", "IN", "BR", "JP"]
    v = {
        "id": i, "ts": 1_795_324_655_609 + i, "user": f"user-{i % 5000}",
        "event": "purchase" if i % 7 == 0 else "page_view", "page": pages[i % 5],
        "referrer": "https://example.com/landing", "country": countries[i % 6],
        "device": "desktop" if i % 3 == 0 else "mobile", "os": "android", "browser": "chrome",
        "session": f"s-{i // 20:09d}", "duration_ms": (i * 37) % 5000, "amount": (i % 1000) / 10.0,
        "currency": "EUR", "items": i % 9, "campaign": "spring-sale", "ab_group": "A" if i % 2 == 0 else "B",
        "is_new": i % 11 == 0, "score": (i % 997) / 997.0, "version": "1.4.2",
    }
    return json.dumps(v, separators=(",", ":")).encode()


def main():
    endpoint, stream, n, keys = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    client = boto3.client("kinesis", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id="bench", aws_secret_access_key="bench")
    events = [event(i) for i in range(n)]
    started, cpu0 = time.monotonic(), time.process_time()
    for start in range(0, n, 500):
        records = [{"Data": events[i], "PartitionKey": f"device-{i % keys}"}
                   for i in range(start, min(start + 500, n))]
        out = client.put_records(StreamName=stream, Records=records)
        if out["FailedRecordCount"]:
            raise SystemExit("the emulator refused records")
    print(json.dumps({"wall": time.monotonic() - started, "cpu": time.process_time() - cpu0}))


main()
