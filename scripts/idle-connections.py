#!/usr/bin/env python3
"""Opens N idle TCP connections to a server, then checks that a normal request is still served.

The issue's 10,000-idle-connections fault, run against a real `lenscap serve` in another
process (the in-process test uses 2,000: client and server in one process would need a file
descriptor limit above 20,000). Standard library only.

    scripts/idle-connections.py 127.0.0.1:8080 10000 /photos/terrace-09.webp
"""
import http.client
import resource
import socket
import sys
import time


def main() -> int:
    host, port = sys.argv[1].rsplit(":", 1)
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 10_000
    path = sys.argv[3] if len(sys.argv) > 3 else "/"
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, count + 100)), hard))

    idle = []
    for i in range(count):
        s = socket.create_connection((host, int(port)), timeout=10)
        idle.append(s)
    time.sleep(1)

    conn = http.client.HTTPConnection(host, int(port), timeout=20)
    conn.request("GET", path, headers={
        "User-Agent": "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
        "Accept": "image/avif,image/webp,*/*",
        "Accept-Language": "en-GB,en;q=0.7",
        "Accept-Encoding": "gzip, deflate, br",
    })
    response = conn.getresponse()
    body = response.read()
    # Idle connections the server closed read as EOF; open ones time out on a short read.
    closed = 0
    for s in idle:
        s.settimeout(0.001)
        try:
            if s.recv(1) == b"":
                closed += 1
        except (socket.timeout, BlockingIOError):
            pass
        except OSError:
            closed += 1
        s.close()
    print(f"{count} idle connections: GET {path} -> {response.status}, {len(body)} bytes; "
          f"{closed} idle connections already closed by the server")
    return 0 if response.status == 200 else 1


if __name__ == "__main__":
    sys.exit(main())
