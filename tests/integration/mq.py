"""MongoDB checks for the integration tests, with pymongo (independent of tokenmeter's C code).

usage: mq.py COMMAND [ARGS]   (database from $MONGODB_URI)
  sums                    requests prompt completion over token_usage
  dump                    every token_usage document, canonical JSON, sorted by _id
  expect-window HOST GPU START REQUESTS TOKENS TPS COST_PER_TOKEN
                          that window has those values (floats: relative 1e-9; "null")
  check-formulas          every document obeys DESIGN 3.3 (exit 1 otherwise)
  count COLLECTION        number of documents
  dropdb                  drop the test database
"""
import datetime
import json
import math
import os
import sys

from bson import json_util
from pymongo import MongoClient

uri = os.environ["MONGODB_URI"]
client = MongoClient(uri, serverSelectionTimeoutMS=5000)
db = client.get_default_database()
tu = db.token_usage


def close(a, b):
    return abs(a - b) <= 1e-9 * max(abs(b), 1e-300)


def main(argv):
    cmd = argv[1]
    if cmd == "sums":
        r = p = c = 0
        for d in tu.find({}, {"requests": 1, "prompt_tokens": 1, "completion_tokens": 1}):
            r += d["requests"]
            p += d["prompt_tokens"]
            c += d["completion_tokens"]
        print(r, p, c)
    elif cmd == "dump":
        for d in tu.find({}).sort("_id", 1):
            print(json_util.dumps(d, sort_keys=True))
    elif cmd == "expect-window":
        start = datetime.datetime.fromisoformat(argv[4].replace("Z", "+00:00"))
        ms = int(start.timestamp() * 1000)
        d = tu.find_one({"_id": f"{argv[2]}/{argv[3]}/{ms}"})
        if d is None:
            print(f"no window {argv[2]}/{argv[3]} at {argv[4]}", file=sys.stderr)
            return 1
        want_cpt = None if argv[8] == "null" else float(argv[8])
        got = (d["requests"], d["tokens"], d["tps"], d["cost_per_token"])
        ok = (d["requests"] == int(argv[5]) and d["tokens"] == int(argv[6])
              and close(d["tps"], float(argv[7]))
              and (d["cost_per_token"] is None if want_cpt is None
                   else d["cost_per_token"] is not None and close(d["cost_per_token"], want_cpt)))
        print(f"{argv[4]}: requests {got[0]}, tokens {got[1]}, tps {got[2]!r}, "
              f"cost_per_token {got[3]!r}" + ("" if ok else f"  WANT {argv[5:9]}"))
        return 0 if ok else 1
    elif cmd == "check-formulas":
        bad = 0
        n = 0
        for d in tu.find({}):
            n += 1
            t = d["prompt_tokens"] + d["completion_tokens"]
            ws = d["window_s"]
            cost = d["price_per_hour_usd"] / 3600 * ws
            ok = (d["tokens"] == t and close(d["tps"], t / ws) and close(d["cost_usd"], cost)
                  and d["requests"] == sum(m["requests"] for m in d["models"])
                  and t == sum(m["tokens"] for m in d["models"]))
            if t == 0:
                ok = ok and d["cost_per_token"] is None and d["cost_per_1m_tokens"] is None
            else:
                ok = ok and close(d["cost_per_token"], cost / t) and close(
                    d["cost_per_1m_tokens"], cost / t * 1e6)
            for k, v in d.items():
                if isinstance(v, float) and not math.isfinite(v):
                    ok = False
            if not ok:
                bad += 1
                print("bad document:", json_util.dumps(d), file=sys.stderr)
        print(f"{n} documents, {bad} bad")
        return 1 if bad or n == 0 else 0
    elif cmd == "count":
        print(db[argv[2]].count_documents({}))
    elif cmd == "dropdb":
        client.drop_database(db.name)
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
