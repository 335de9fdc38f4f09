#!/usr/bin/env python3
# Writes ROUNDS x KEYS values of SIZE bytes to a graycast server (namespace "disk") and
# prints the bytes of values written, to compare with the size of the store file:
#   scripts/disk-usage.py http://127.0.0.1:8080 5 40 100000 [THREADS]
import json, sys, urllib.request, concurrent.futures
url = sys.argv[1]; rounds = int(sys.argv[2]); keys = int(sys.argv[3]); size = int(sys.argv[4])
blob = "y" * size
def put(args):
    r, i = args
    body = json.dumps({"value": {"round": r, "blob": blob}}).encode()
    req = urllib.request.Request(f"{url}/v1/configs/disk/k{i}", data=body, method="PUT", headers={"content-type": "application/json"})
    urllib.request.urlopen(req).read()
with concurrent.futures.ThreadPoolExecutor(int(sys.argv[5]) if len(sys.argv) > 5 else 8) as ex:
    for r in range(rounds):
        list(ex.map(put, [(r, i) for i in range(keys)]))
print("wrote", rounds * keys * size)
