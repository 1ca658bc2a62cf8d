#!/usr/bin/env python3
"""Writes a synthetic access log for `lenscap replay --format jsonl` throughput runs.

    scripts/replay-corpus.py 1000000 > /tmp/replay1m.jsonl

70% of the lines come from browsers (User-Agents from tests/data/browsers.txt), half of
them with the headers a browser sends; 30% from wget, curl, GPTBot, Googlebot and
python-requests. Addresses are drawn from a pool of 5,000 so visitors come back; paths are
pages and images; `t` advances by 5 ms a line. The seed is fixed: the same count gives the
same file.
"""

import json
import random
import sys
from pathlib import Path

TOOLS = [
    "Wget/1.21.3",
    "curl/8.5.0",
    "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2; +https://openai.com/gptbot)",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "python-requests/2.32.3",
]


def browsers() -> list[str]:
    path = Path(__file__).resolve().parent.parent / "tests/data/browsers.txt"
    lines = path.read_text(encoding="utf-8").splitlines()
    return [l for l in lines if l and not l.startswith("#")]


def line(rng: random.Random, agents: list[str], addresses: list[str], t: float) -> dict:
    page = rng.random() < 0.15
    path = f"/gallery/{rng.randrange(40)}" if page else f"/photos/IMG_{rng.randrange(5000):04}.jpg"
    if rng.random() < 0.7:
        headers = {"user-agent": rng.choice(agents)}
        if rng.random() < 0.5:
            headers["accept"] = (
                "text/html,application/xhtml+xml,*/*;q=0.8" if page else "image/avif,image/webp,*/*;q=0.8"
            )
            headers["accept-language"] = "en-GB,en;q=0.9"
            headers["accept-encoding"] = "gzip, deflate, br"
            headers["sec-fetch-dest"] = "document" if page else "image"
            if not page:
                headers["referer"] = "https://gallery.example/gallery/1"
    else:
        headers = {"user-agent": rng.choice(TOOLS), "accept": "*/*"}
    return {
        "ip": rng.choice(addresses),
        "method": "GET",
        "path": path,
        "scheme": "https",
        "headers": headers,
        "t": round(t, 3),
    }


def main() -> int:
    if len(sys.argv) != 2 or not sys.argv[1].isdigit():
        print("usage: scripts/replay-corpus.py LINES > FILE", file=sys.stderr)
        return 2
    rng = random.Random(17)
    agents = browsers()
    addresses = [
        f"{rng.randrange(1, 224)}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        for _ in range(5000)
    ]
    out = sys.stdout
    t = 1_780_000_000.0
    for _ in range(int(sys.argv[1])):
        out.write(json.dumps(line(rng, agents, addresses, t), separators=(",", ":")))
        out.write("\n")
        t += 0.005
    return 0


if __name__ == "__main__":
    sys.exit(main())
