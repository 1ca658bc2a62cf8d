#!/usr/bin/env python3
"""The page-then-images scraper of issue 10, in the Python standard library only.

It sends Chrome's headers, keeps a cookie jar and correct Referers, opens the gallery's
index, then each gallery page it links to and that page's images, with no pauses. It
prints what it got as one JSON object on standard output:

    {"photos": 57, "pages": 15, "refused": {"429": 243}, "seconds": 1.9}

Options:
  --base URL         where to connect (http://127.0.0.1:PORT or https://127.0.0.1:PORT)
  --host NAME        the Host header and the origin of Referers (a public name)
  --cafile FILE      the certificate to trust for HTTPS
  --fetch-metadata   forge Chrome's Sec-Fetch-* headers and client hints (secure origins)
  --rotate-xff       behind a trusted proxy: every page and its images come from a new
                     X-Forwarded-For address in another /24, with a fresh cookie jar
"""

import argparse
import http.cookiejar
import json
import ssl
import sys
import time
import urllib.error
import urllib.request
import zlib
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

CHROME = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36"
)
DOCUMENT_ACCEPT = (
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,"
    "image/webp,image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7"
)
IMAGE_ACCEPT = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8"
CLIENT_HINTS = {
    "sec-ch-ua": '"Chromium";v="156", "Google Chrome";v="156", "Not-A.Brand";v="24"',
    "sec-ch-ua-mobile": "?0",
    "sec-ch-ua-platform": '"Linux"',
}


class Links(HTMLParser):
    """The images (src, srcset, picture sources) and the links of one HTML page."""

    def __init__(self):
        super().__init__()
        self.images = []
        self.links = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag in ("img", "source"):
            for url in [attrs.get("src")] + srcset_urls(attrs.get("srcset")):
                if url and url not in self.images:
                    self.images.append(url)
        elif tag == "a" and attrs.get("href"):
            self.links.append(attrs["href"])


def srcset_urls(srcset):
    if not srcset:
        return []
    return [part.strip().split()[0] for part in srcset.split(",") if part.strip()]


class Scraper:
    def __init__(self, args):
        self.args = args
        scheme = urlsplit(args.base).scheme
        self.origin = f"{scheme}://{args.host}"
        handlers = []
        if scheme == "https":
            if not args.cafile:
                sys.exit("page_then_images.py: --cafile is needed for an https --base")
            context = ssl.create_default_context(cafile=args.cafile)
            handlers.append(urllib.request.HTTPSHandler(context=context))
        self.handlers = handlers
        self.address = 0
        self.new_identity()
        self.photos = 0
        self.pages = 0
        self.refused = {}

    def new_identity(self):
        """A fresh cookie jar (and, rotating, the next forwarded address)."""
        self.jar = http.cookiejar.CookieJar()
        cookies = urllib.request.HTTPCookieProcessor(self.jar)
        self.opener = urllib.request.build_opener(cookies, *self.handlers)
        self.address += 1
        # 198.18.0.0/15 holds 512 /24s: the n-th identity sits alone in the n-th.
        n = self.address
        self.forwarded_for = f"198.{18 + n // 256 % 2}.{n % 256}.{7 + n % 200}"

    def fetch(self, path, document, referer):
        headers = {
            "Host": self.args.host,
            "User-Agent": CHROME,
            "Accept": DOCUMENT_ACCEPT if document else IMAGE_ACCEPT,
            "Accept-Language": "en-GB,en-US;q=0.9,en;q=0.8",
            "Accept-Encoding": "gzip, deflate, br, zstd",
        }
        if document:
            headers["Upgrade-Insecure-Requests"] = "1"
        if referer:
            headers["Referer"] = self.origin + referer
        if self.args.fetch_metadata:
            headers.update(CLIENT_HINTS)
            headers["Sec-Fetch-Site"] = "same-origin" if referer else "none"
            headers["Sec-Fetch-Mode"] = "navigate" if document else "no-cors"
            headers["Sec-Fetch-Dest"] = "document" if document else "image"
            if document:
                headers["Sec-Fetch-User"] = "?1"
        if self.args.rotate_xff:
            headers["X-Forwarded-For"] = self.forwarded_for
        request = urllib.request.Request(urljoin(self.args.base, path), headers=headers)
        try:
            with self.opener.open(request, timeout=30) as response:
                return response.status, decoded(response)
        except urllib.error.HTTPError as refused:
            refused.read()
            return refused.code, b""

    def note_refusal(self, status):
        key = str(status)
        self.refused[key] = self.refused.get(key, 0) + 1

    def page(self, path, referer):
        status, body = self.fetch(path, True, referer)
        if status != 200:
            self.note_refusal(status)
            return Links()
        self.pages += 1
        links = Links()
        links.feed(body.decode("utf-8", "replace"))
        return links

    def images_of(self, path, links):
        for image in links.images:
            status, body = self.fetch(urljoin(path, image), False, path)
            if status == 200 and body:
                self.photos += 1
            else:
                self.note_refusal(status)

    def run(self):
        index = self.page("/", None)
        pages = [urljoin("/", href) for href in index.links if href.endswith(".html")]
        if not pages:
            sys.exit("page_then_images.py: the index links no gallery page")
        for path in pages:
            if self.args.rotate_xff:
                self.new_identity()
            links = self.page(path, "/")
            self.images_of(path, links)


def decoded(response):
    body = response.read()
    encoding = response.headers.get("Content-Encoding", "identity").lower()
    if encoding in ("gzip", "x-gzip"):
        return zlib.decompress(body, 16 + zlib.MAX_WBITS)
    if encoding == "deflate":
        return zlib.decompress(body)
    if encoding != "identity":
        sys.exit(f"page_then_images.py: unexpected Content-Encoding {encoding!r}")
    return body


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True)
    parser.add_argument("--host", required=True)
    parser.add_argument("--cafile")
    parser.add_argument("--fetch-metadata", action="store_true")
    parser.add_argument("--rotate-xff", action="store_true")
    args = parser.parse_args()
    scraper = Scraper(args)
    started = time.monotonic()
    scraper.run()
    print(
        json.dumps(
            {
                "photos": scraper.photos,
                "pages": scraper.pages,
                "refused": scraper.refused,
                "seconds": round(time.monotonic() - started, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
