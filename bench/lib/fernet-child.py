"""The seed's approach, for bench/model-crypto.ts: Fernet (python3 `cryptography`) over a whole file.

  python3 bench/lib/fernet-child.py encrypt INPUT TOKEN   < fernet key (one line)
  python3 bench/lib/fernet-child.py decrypt TOKEN         < fernet key (one line)

encrypt reads the file, encrypts it as one Fernet token, writes and fsyncs the token (as
`edgeguard model pack` fsyncs its package); decrypt reads the token and decrypts it in memory,
writing nothing. Prints one JSON line like model-crypto-child.ts:
  {"op", "seconds", "cpuSeconds", "bytes", "outBytes", "idleRssKiB", "maxRssKiB"}
"""
import json
import os
import resource
import sys
import time

from cryptography.fernet import Fernet


def rss_kib() -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main() -> None:
    op = sys.argv[1]
    f = Fernet(sys.stdin.readline().strip().encode("ascii"))
    idle = rss_kib()
    cpu0 = time.process_time()
    t = time.perf_counter()
    if op == "encrypt":
        with open(sys.argv[2], "rb") as src:
            data = src.read()
        token = f.encrypt(data)
        with open(sys.argv[3], "wb") as out:
            out.write(token)
            out.flush()
            os.fsync(out.fileno())
        n, out_bytes = len(data), len(token)
    elif op == "decrypt":
        with open(sys.argv[2], "rb") as src:
            token = src.read()
        data = f.decrypt(token)
        n, out_bytes = len(data), len(token)
    else:
        raise SystemExit(f"unknown operation {op}")
    seconds = time.perf_counter() - t
    cpu_seconds = time.process_time() - cpu0
    max_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"op": op, "seconds": seconds, "cpuSeconds": cpu_seconds, "bytes": n, "outBytes": out_bytes, "idleRssKiB": idle, "maxRssKiB": max_rss}))


if __name__ == "__main__":
    main()
