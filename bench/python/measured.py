"""Runs a command and prints {"wall": s, "cpu": s} of it (user + system CPU of the child), for
contenders that do not measure themselves (pg_recvlogical).

usage: measured.py COMMAND [ARGS...]
"""
import json
import resource
import subprocess
import sys
import time

started = time.monotonic()
subprocess.run(sys.argv[1:], check=True)
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"wall": time.monotonic() - started, "cpu": usage.ru_utime + usage.ru_stime}))
