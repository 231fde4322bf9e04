"""The hand-written alternative to the Kinesis source: boto3 get_records of up to LIMIT records per
call, shard after shard from TRIM_HORIZON, until every shard is read to its end (an empty page
with MillisBehindLatest 0). Prints {"wall": s, "cpu": s, "records": n} of the loop (start-up and
imports left out, as for the other contenders).

usage: kinesis_boto3_source_baseline.py ENDPOINT STREAM LIMIT
"""
import json
import sys
import time

import boto3


def main():
    endpoint, stream, limit = sys.argv[1], sys.argv[2], int(sys.argv[3])
    client = boto3.client("kinesis", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id="bench", aws_secret_access_key="bench")
    started, cpu0 = time.monotonic(), time.process_time()
    records = 0
    shards = client.list_shards(StreamName=stream)["Shards"]
    for shard in shards:
        iterator = client.get_shard_iterator(StreamName=stream, ShardId=shard["ShardId"],
                                             ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        while iterator:
            page = client.get_records(ShardIterator=iterator, Limit=limit)
            records += len(page["Records"])
            if not page["Records"] and page.get("MillisBehindLatest", 0) == 0:
                break
            iterator = page.get("NextShardIterator")
    print(json.dumps({"wall": time.monotonic() - started, "cpu": time.process_time() - cpu0,
                      "records": records}))


main()
