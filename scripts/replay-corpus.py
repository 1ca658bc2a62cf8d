#!/usr/bin/env python3
"""Writes a synthetic access log for `lenscap replay --format jsonl` throughput runs.

    scripts/replay-corpus.py 1000000 > /tmp/replay1m.jsonl

The mix, per line:

- 60% people: 20,000 visitors, each with one address (a fifth of them behind an address a
  few others share, as on pub Wi-Fi or a carrier NAT) and one browser User-Agent drawn from
  tests/data/browsers.txt and browsers-generated.txt with a long-tailed popularity (the
  most common User-Agents carry most of the traffic, the other ~11,000 the rest). Each
  sends a browser's headers (two thirds of them with fetch metadata over https), a page
  first and then the images it embeds, with the page as Referer.
- 15% known crawlers: 400 of them, each with one User-Agent from tests/data/crawlers.txt
  (the public crawler list) and its own address.
- 15% scripts: 300 of them, wget, curl, python-requests, Go-http-client, aiohttp, Scrapy,
  okhttp and Java with their version numbers, few headers.
- 10% a scraper that rotates User-Agents: a fresh browser User-Agent (uniformly drawn) on
  every request, from 2,000 addresses in one hosting /16.

`t` advances by 5 ms a line; paths are pages and images. The seed is fixed: the same count
gives the same file.
"""

import json
import random
import sys
from pathlib import Path

DATA = Path(__file__).resolve().parent.parent / "tests/data"

SCRIPTS = [
    "Wget/1.21.{}",
    "curl/8.{}.0",
    "python-requests/2.3{}.0",
    "Go-http-client/1.{}",
    "Python/3.1{} aiohttp/3.9.5",
    "Scrapy/2.1{}.0 (+https://scrapy.org)",
    "okhttp/4.{}.0",
    "Java/17.0.{}",
]


def user_agents(name: str) -> list[str]:
    lines = (DATA / name).read_text(encoding="utf-8").splitlines()
    return [l.strip().strip("'") for l in lines if l.strip() and not l.startswith("#")]


def address(rng: random.Random) -> str:
    return f"{rng.randrange(1, 224)}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"


class Person:
    def __init__(self, rng: random.Random, browsers: list[str], weights: list[float], ip: str):
        self.ip = ip
        self.ua = rng.choices(browsers, weights)[0]
        self.secure = rng.random() < 2 / 3
        self.page = None

    def request(self, rng: random.Random) -> tuple[str, dict]:
        if self.page is None or rng.random() < 0.15:
            self.page = f"/gallery/{rng.randrange(40)}"
            path, image = self.page, False
        else:
            path, image = f"/photos/IMG_{rng.randrange(5000):04}.jpg", True
        headers = {
            "user-agent": self.ua,
            "accept": "image/avif,image/webp,*/*;q=0.8" if image else "text/html,application/xhtml+xml,*/*;q=0.8",
            "accept-language": "en-GB,en;q=0.9",
            "accept-encoding": "gzip, deflate, br",
        }
        if image:
            headers["referer"] = f"https://gallery.example{self.page}"
        if self.secure:
            headers["sec-fetch-dest"] = "image" if image else "document"
            headers["sec-fetch-mode"] = "no-cors" if image else "navigate"
        return path, headers


def line(ip: str, path: str, headers: dict, t: float, secure: bool = True) -> str:
    record = {
        "ip": ip,
        "method": "GET",
        "path": path,
        "scheme": "https" if secure else "http",
        "headers": headers,
        "t": round(t, 3),
    }
    return json.dumps(record, separators=(",", ":"))


def main() -> int:
    if len(sys.argv) != 2 or not sys.argv[1].isdigit():
        print("usage: scripts/replay-corpus.py LINES > FILE", file=sys.stderr)
        return 2
    rng = random.Random(17)
    browsers = user_agents("browsers.txt") + user_agents("browsers-generated.txt")
    rng.shuffle(browsers)
    popularity = [1 / (rank + 1) for rank in range(len(browsers))]
    crawler_list = user_agents("crawlers.txt")
    shared = [address(rng) for _ in range(800)]
    people = [
        Person(rng, browsers, popularity, rng.choice(shared) if rng.random() < 0.2 else address(rng))
        for _ in range(20_000)
    ]
    crawlers = [(address(rng), rng.choice(crawler_list)) for _ in range(400)]
    scripts = [(address(rng), rng.choice(SCRIPTS).format(rng.randrange(10))) for _ in range(300)]
    hosting = [f"198.18.{rng.randrange(256)}.{rng.randrange(1, 255)}" for _ in range(2_000)]
    out = sys.stdout
    t = 1_780_000_000.0
    for _ in range(int(sys.argv[1])):
        pick = rng.random()
        if pick < 0.60:
            person = rng.choice(people)
            path, headers = person.request(rng)
            text = line(person.ip, path, headers, t, person.secure)
        elif pick < 0.75:
            ip, ua = rng.choice(crawlers)
            path = f"/gallery/{rng.randrange(40)}" if rng.random() < 0.3 else f"/photos/IMG_{rng.randrange(5000):04}.jpg"
            text = line(ip, path, {"user-agent": ua, "accept": "*/*", "accept-encoding": "gzip"}, t)
        elif pick < 0.90:
            ip, ua = rng.choice(scripts)
            text = line(ip, f"/photos/IMG_{rng.randrange(5000):04}.jpg", {"user-agent": ua, "accept": "*/*"}, t)
        else:
            headers = {
                "user-agent": rng.choice(browsers),
                "accept": "image/avif,image/webp,*/*;q=0.8",
                "accept-language": "en-US,en;q=0.5",
                "accept-encoding": "gzip, deflate, br",
            }
            text = line(rng.choice(hosting), f"/photos/IMG_{rng.randrange(5000):04}.jpg", headers, t)
        out.write(text)
        out.write("\n")
        t += 0.005
    return 0


if __name__ == "__main__":
    sys.exit(main())
