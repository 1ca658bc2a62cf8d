#!/usr/bin/env python3
"""Writes browsers-generated.txt: realistic browser User-Agents made from the version ranges,
platforms and devices browsers really ship (desktop, mobile, in-app, old). Deterministic.

    python3 tests/data/make_browsers.py > tests/data/browsers-generated.txt
"""

import itertools

WIN = ["Windows NT 10.0; Win64; x64", "Windows NT 10.0; WOW64", "Windows NT 6.1; Win64; x64",
       "Windows NT 6.3; Win64; x64"]
MAC = ["Macintosh; Intel Mac OS X 10_15_7", "Macintosh; Intel Mac OS X 10_14_6",
       "Macintosh; Intel Mac OS X 13_6_1"]
LINUX = ["X11; Linux x86_64", "X11; Ubuntu; Linux x86_64", "X11; Fedora; Linux x86_64",
         "X11; CrOS x86_64 15633.69.0", "X11; Linux aarch64"]
ANDROID_DEVICES = [
    "K", "SM-S918B", "SM-S928B", "SM-A546B", "SM-G991B", "SM-A155F", "SM-X710", "Pixel 7",
    "Pixel 8 Pro", "Pixel 9", "Pixel 6a", "M2101K6G", "23129RAA4G", "2201117TY", "CPH2581",
    "CPH2451", "RMX3710", "V2250", "moto g54 5G", "motorola edge 40", "XQ-DQ54", "NE2213",
    "CUBOT KINGKONG 9", "CUBOT_X30", "CUBOT NOTE 40", "Nokia G42 5G", "TECNO KI5q",
    "Infinix X6833B", "HUAWEI P30", "ELS-NX9", "A142", "Redmi Note 12", "ONEPLUS A6013",
    "SM-T510", "Lenovo TB-X606F", "KFTRWI", "BV9300", "Armor 21", "Blackview A95",
]
ANDROID_VERSIONS = ["10", "11", "12", "13", "14", "15", "16"]
IOS = ["15_8_3", "16_7_10", "17_5_1", "17_6_1", "18_0", "18_1_1", "18_3_2", "18_6", "26_0_1",
       "26_1"]


def chrome_desktop():
    for v in range(100, 156):
        for p in WIN + MAC + LINUX:
            yield f"Mozilla/5.0 ({p}) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 Safari/537.36"
        for p in WIN + MAC[:1]:
            yield f"Mozilla/5.0 ({p}) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 Safari/537.36 Edg/{v}.0.{v * 17 % 900}.{v % 90}"
            yield f"Mozilla/5.0 ({p}) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 Safari/537.36 OPR/{v - 14}.0.0.0"
        yield f"Mozilla/5.0 ({WIN[0]}) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 YaBrowser/24.{v % 12 + 1}.0.0 Safari/537.36"
        yield f"Mozilla/5.0 ({LINUX[0]}) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 Safari/537.36 Vivaldi/{6 + v % 3}.{v % 9}.{3000 + v}.{v % 50}"


def firefox_desktop():
    for v in range(100, 151):
        for p in WIN[:2] + ["Macintosh; Intel Mac OS X 10.15", "Macintosh; Intel Mac OS X 14.5"] + LINUX[:4]:
            yield f"Mozilla/5.0 ({p}; rv:{v}.0) Gecko/20100101 Firefox/{v}.0"


def safari_desktop():
    for major, minors in [(15, 6), (16, 6), (17, 6), (18, 6), (26, 2)]:
        for minor in range(minors + 1):
            for p in MAC:
                yield f"Mozilla/5.0 ({p}) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/{major}.{minor} Safari/605.1.15"


def android():
    for v, (a, d) in itertools.product(range(110, 156, 3), itertools.product(ANDROID_VERSIONS, ANDROID_DEVICES)):
        yield f"Mozilla/5.0 (Linux; Android {a}; {d}) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 Mobile Safari/537.36"
    for v in range(110, 156, 5):
        for a in ANDROID_VERSIONS:
            for d in ANDROID_DEVICES[::3]:
                build = f"{'UP1A' if a >= '14' else 'TP1A'}.{230000 + v * 13}.0{v % 9}"
                yield f"Mozilla/5.0 (Linux; Android {a}; {d} Build/{build}; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/{v}.0.{6000 + v * 7}.{v % 200} Mobile Safari/537.36"
                yield f"Mozilla/5.0 (Linux; Android {a}; {d} Build/{build}; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/{v}.0.{6000 + v * 7}.{v % 200} Mobile Safari/537.36 [FB_IAB/FB4A;FBAV/{400 + v}.0.0.{v % 60}.{v};]"
                yield f"Mozilla/5.0 (Linux; Android {a}; {d} Build/{build}; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/{v}.0.{6000 + v * 7}.{v % 200} Mobile Safari/537.36 Instagram {250 + v}.0.0.{v % 40}.{v} Android (3{a[-1]}/{a}; 420dpi; 1080x2340; samsung; {d}; qcom; en_GB; {500000000 + v * 1001})"
        for a in ANDROID_VERSIONS:
            yield f"Mozilla/5.0 (Linux; Android {a}; SAMSUNG SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/{v // 5}.0 Chrome/{v}.0.0.0 Mobile Safari/537.36"
            yield f"Mozilla/5.0 (Android {a}; Mobile; rv:{v - 10}.0) Gecko/{v - 10}.0 Firefox/{v - 10}.0"


def ios():
    for os in IOS:
        major = os.split("_")[0]
        minor = os.split("_")[1] if "_" in os else "0"
        for dev in ["iPhone; CPU iPhone OS", "iPad; CPU OS"]:
            yield f"Mozilla/5.0 ({dev} {os} like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/{major}.{minor} Mobile/15E148 Safari/604.1"
            for v in range(120, 156, 4):
                yield f"Mozilla/5.0 ({dev} {os} like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/{v}.0.{6000 + v}.{v % 100} Mobile/15E148 Safari/604.1"
                yield f"Mozilla/5.0 ({dev} {os} like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) FxiOS/{v}.0 Mobile/15E148 Safari/605.1.15"
                yield f"Mozilla/5.0 ({dev} {os} like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/{major}.0 EdgiOS/{v}.0.{2000 + v}.{v % 80} Mobile/15E148 Safari/605.1.15"
            for v in range(300, 420, 15):
                yield f"Mozilla/5.0 ({dev} {os} like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/22D82 Instagram {v}.0.0.{v % 30}.{v} (iPhone15,3; iOS {os}; en_GB; en-GB; scale=3.00; 1290x2796; {600000000 + v})"
                yield f"Mozilla/5.0 ({dev} {os} like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/22D82 [FBAN/FBIOS;FBAV/{v + 100}.0.0.{v % 50}.{v % 90};FBBV/{700000000 + v};FBDV/iPhone15,3;FBMD/iPhone;FBSN/iOS;FBSV/{os.replace('_', '.')};FBSS/3;FBID/phone;FBLC/en_GB;FBOP/5]"
                yield f"Mozilla/5.0 ({dev} {os} like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 Line/{v // 30}.{v % 20}.0"
                yield f"Mozilla/5.0 ({dev} {os} like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 musical_ly_{v // 10}.0.0 JsSdk/2.0 NetType/WIFI Channel/App Store ByteLocale/en Region/GB"


def old():
    for ie, trident in [(6, None), (7, None), (8, "4.0"), (9, "5.0"), (10, "6.0")]:
        for nt in ["5.1", "6.0", "6.1", "6.2"]:
            extra = f"; Trident/{trident}" if trident else ""
            compat = "Mozilla/4.0" if ie < 9 else "Mozilla/5.0"
            yield f"{compat} (compatible; MSIE {ie}.0; Windows NT {nt}{extra})"
            yield f"{compat} (compatible; MSIE {ie}.0; Windows NT {nt}{extra}; SLCC2; .NET CLR 2.0.50727; .NET CLR 3.5.30729; .NET CLR 3.0.30729; Media Center PC 6.0)"
            yield f"{compat} (compatible; MSIE {ie}.0; Windows NT {nt}; WOW64{extra}; SLCC1; .NET CLR 2.0.50727; InfoPath.2)"
    for nt in ["6.1", "6.3", "10.0"]:
        yield f"Mozilla/5.0 (Windows NT {nt}; WOW64; Trident/7.0; rv:11.0) like Gecko"
        yield f"Mozilla/5.0 (Windows NT {nt}; Trident/7.0; SLCC2; .NET CLR 2.0.50727; .NET4.0C; .NET4.0E; rv:11.0) like Gecko"
    for v in range(3, 100, 4):
        yield f"Mozilla/5.0 (Windows NT 6.1; rv:{v}.0) Gecko/20100101 Firefox/{v}.0"
        yield f"Mozilla/5.0 (Windows NT 6.1; WOW64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.{1000 + v * 30}.{v} Safari/537.36"
    for a in ["4.0.4", "4.1.2", "4.4.2", "5.1.1"]:
        yield f"Mozilla/5.0 (Linux; U; Android {a}; en-us; GT-I9300 Build/JZO54K) AppleWebKit/534.30 (KHTML, like Gecko) Version/4.0 Mobile Safari/534.30"
    for v in ["9.80", "12.16"]:
        yield f"Opera/{v} (Windows NT 6.1; U; en) Presto/2.12.388 Version/12.16"


def main():
    seen = set()
    for ua in itertools.chain(chrome_desktop(), firefox_desktop(), safari_desktop(), android(), ios(), old()):
        if ua not in seen:
            seen.add(ua)
            print(ua)


main()
