"""`melgraph report` end to end on a small demo run (ctest's fixture: `melgraph demo` with 48 clips):
the page it writes is checked by tools that did not write it.

- html5lib parses it in strict mode (any HTML5 parse error raises);
- Python's sqlite3 reads the run's metric names from runs.sqlite: each is in some chart's
  data-metrics;
- nothing on the page points outside it (no src=, no href but #anchors, no http(s) URL but the
  SVG namespace name, no url() or @import in CSS);
- headless Chromium, driven over the DevTools protocol (--remote-debugging-pipe), loads it:
  no console error, no uncaught exception, no error in the browser log, no request but the page
  itself; and its screenshot is not blank (a share of non-background pixels, several colours).
The detectors are shown to work on pages made to fail them: one with console.error(), a
thrown Error and an image to load, and an empty page for the blank check.

  python3 test_report.py DEMO_DIR MELGRAPH_EXE OUT_DIR

Without chromium, PIL or html5lib it exits 77 (ctest: skipped) saying why, unless
MELGRAPH_REQUIRE_REFERENCE=1, when it fails instead.
"""
import base64
import fcntl
import json
import os
import re
import select
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import unittest

SKIP = 77


def preflight():
    missing = []
    try:
        import html5lib  # noqa: F401
    except ImportError:
        missing.append("html5lib (Debian: python3-html5lib)")
    try:
        import PIL  # noqa: F401
    except ImportError:
        missing.append("PIL (Debian: python3-pil)")
    if not chromium_exe():
        missing.append("chromium (Debian: chromium)")
    if missing:
        why = "report page test needs " + ", ".join(missing) + " (scripts/setup installs them)"
        if os.environ.get("MELGRAPH_REQUIRE_REFERENCE") == "1":
            print("MELGRAPH_REQUIRE_REFERENCE=1: " + why)
            sys.exit(1)
        print("skipped: " + why)
        sys.exit(SKIP)


def chromium_exe():
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    return None


class Browser:
    """One headless Chromium, spoken to over the DevTools protocol on a pipe: it reads commands on
    its fd 3 and writes answers and events on fd 4, each a JSON text ended by a NUL byte. Unlike
    --enable-logging's CONSOLE lines (the same level for console.log and console.error), the
    protocol's events say which kind each message is."""

    def __init__(self, profile_dir, timeout=60):
        self.deadline = time.time() + timeout
        self.buf = b""
        self.next_id = 0
        self.events = []
        to_child_r, self.to_child = os.pipe()
        self.from_child, from_child_w = os.pipe()

        def fds_3_and_4():
            # Moved above 4 first, so that neither dup2 overwrites the other's source.
            r = fcntl.fcntl(to_child_r, fcntl.F_DUPFD, 10)
            w = fcntl.fcntl(from_child_w, fcntl.F_DUPFD, 10)
            os.dup2(r, 3)
            os.dup2(w, 4)

        self.proc = subprocess.Popen(
            [chromium_exe(), "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe",
             "--user-data-dir=" + profile_dir, "--no-first-run", "--disable-extensions",
             "--disable-background-networking", "--hide-scrollbars", "--mute-audio", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            pass_fds=(3, 4), preexec_fn=fds_3_and_4)
        os.close(to_child_r)
        os.close(from_child_w)

    def _read_message(self):
        while b"\0" not in self.buf:
            left = self.deadline - time.time()
            if left <= 0:
                raise TimeoutError("chromium did not answer in time")
            ready, _, _ = select.select([self.from_child], [], [], left)
            if ready:
                chunk = os.read(self.from_child, 1 << 20)
                if not chunk:
                    raise RuntimeError("chromium closed its DevTools pipe (exit code %s)" % self.proc.poll())
                self.buf += chunk
        message, self.buf = self.buf.split(b"\0", 1)
        return json.loads(message)

    def call(self, method, params=None, session=None):
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self.to_child, json.dumps(message).encode() + b"\0")
        while True:
            m = self._read_message()
            if m.get("id") == self.next_id:
                if "error" in m:
                    raise RuntimeError("%s: %s" % (method, m["error"]))
                return m.get("result", {})
            self.events.append(m)

    def wait_for(self, event):
        if any(e.get("method") == event for e in self.events):
            return
        while True:
            m = self._read_message()
            self.events.append(m)
            if m.get("method") == event:
                return

    def close(self):
        try:
            self.call("Browser.close")
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self.to_child)
        os.close(self.from_child)


def load_page(path, png, width=1280, height=2400):
    """Loads file `path` in a fresh browser, waits for its load event and a moment more, writes
    the viewport's screenshot to `png`. Returns (problems, requests): the console errors,
    uncaught exceptions and browser log errors as text, and every URL the page requested."""
    url = "file://" + os.path.abspath(path)
    with tempfile.TemporaryDirectory(prefix="melgraph-chromium-") as profile:
        b = Browser(profile)
        try:
            target = b.call("Target.createTarget", {"url": "about:blank"})
            s = b.call("Target.attachToTarget", {"targetId": target["targetId"], "flatten": True})["sessionId"]
            for domain in ("Runtime", "Log", "Page", "Network"):
                b.call(domain + ".enable", session=s)
            b.call("Emulation.setDeviceMetricsOverride",
                   {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}, session=s)
            b.call("Page.navigate", {"url": url}, session=s)
            b.wait_for("Page.loadEventFired")
            time.sleep(0.5)  # late errors (timers, failed loads) still arrive
            shot = b.call("Page.captureScreenshot", {"format": "png"}, session=s)
            with open(png, "wb") as f:
                f.write(base64.b64decode(shot["data"]))
            b.call("Runtime.evaluate", {"expression": "0"}, session=s)  # drains the events before it
        finally:
            b.close()
    problems, requests = [], []
    for e in b.events:
        method, p = e.get("method"), e.get("params", {})
        if method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            problems.append("console.%s: %s" % (p["type"], " ".join(str(a.get("value", a.get("description")))
                                                                     for a in p.get("args", []))))
        elif method == "Runtime.exceptionThrown":
            d = p["exceptionDetails"]
            problems.append("uncaught exception: %s %s" % (d.get("text"), d.get("exception", {}).get("description")))
        elif method == "Log.entryAdded" and p["entry"].get("level") == "error":
            problems.append("browser log: %s (%s)" % (p["entry"].get("text"), p["entry"].get("url")))
        elif method == "Network.requestWillBeSent":
            requests.append(p["request"]["url"])
    return problems, requests


def blankness(png):
    """(share of pixels unlike the most common colour, colours covering >= 50 pixels)."""
    from PIL import Image
    im = Image.open(png).convert("RGB")
    counts = im.getcolors(maxcolors=im.width * im.height)
    background = max(counts)[0]
    total = im.width * im.height
    return 1 - background / total, sum(1 for n, _ in counts if n >= 50)


def not_blank(png):
    share, colours = blankness(png)
    return share >= 0.02 and colours >= 5, "non-background %.2f%%, %d colours" % (100 * share, colours)


def local(e):
    """An element's tag without its namespace (html5lib puts SVG elements in the SVG namespace)."""
    return e.tag.split("}")[-1] if isinstance(e.tag, str) else ""


def descendants(e, tag):
    return [d for d in e.iter() if local(d) == tag]


def charted_names(tree):
    """Every name in the data-metrics of a <figure class="chart"> that holds one SVG."""
    names = set()
    for fig in descendants(tree.getroot() if hasattr(tree, "getroot") else tree, "figure"):
        if "chart" in fig.get("class", "").split() and len(descendants(fig, "svg")) == 1:
            names.update(fig.get("data-metrics", "").split())
    return names


def run_metric_names():
    db = sqlite3.connect("file:" + os.path.join(RUN, "runs.sqlite") + "?mode=ro", uri=True)
    run = db.execute("SELECT max(id) FROM runs").fetchone()[0]
    names = {n for (n,) in db.execute("SELECT DISTINCT name FROM metrics WHERE run = ?", (run,))}
    db.close()
    return names


def parse_strict(data):
    import html5lib
    return html5lib.HTMLParser(strict=True, namespaceHTMLElements=False).parse(data)


DEMO, EXE, OUT = sys.argv[1], sys.argv[2], sys.argv[3]
RUN = os.path.join(DEMO, "run")
INDEX = os.path.join(DEMO, "index.sqlite")


PAGE = os.path.join(OUT, "report.html")
REPORT = {}


def setUpModule():
    """The page under test, written once: melgraph report of the demo run with its index."""
    if os.path.exists(PAGE):
        os.remove(PAGE)
    r = subprocess.run([EXE, "report", RUN, "--index", INDEX, "--out", PAGE], capture_output=True, text=True,
                       timeout=300)
    if r.returncode != 0:
        raise AssertionError("melgraph report failed (%d):\n%s%s" % (r.returncode, r.stdout, r.stderr))
    REPORT["stdout"] = r.stdout
    with open(PAGE, "rb") as f:
        REPORT["raw"] = f.read()


class ReportPage(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.page = PAGE
        cls.stdout = REPORT["stdout"]
        cls.raw = REPORT["raw"]
        cls.text = cls.raw.decode("utf-8")
        cls.tree = parse_strict(cls.raw)

    def test_prints_the_path(self):
        self.assertIn(self.page, self.stdout)

    def test_strict_html5(self):
        import html5lib
        html5lib.HTMLParser(strict=True).parse(self.raw)  # raises on any parse error
        self.assertTrue(self.text.startswith("<!DOCTYPE html>"))

    def test_every_metric_of_the_run_is_in_a_chart(self):
        names = run_metric_names()
        self.assertGreater(len(names), 10)
        self.assertGreater(len([f for f in descendants(self.tree, "figure") if f.get("class") == "chart"]), 5)
        charted = charted_names(self.tree)
        self.assertEqual(names - charted, set(), "metrics of the run in no chart")
        self.assertEqual(charted - names, set(), "charted names that the run did not log")

    def test_nothing_points_outside_the_page(self):
        for e in self.tree.iter():
            if not isinstance(e.tag, str):
                continue
            for attr, value in e.attrib.items():
                name = attr.split("}")[-1]
                self.assertNotIn(name, ("src", "srcset", "action", "poster", "data"), "<%s %s=...>" % (e.tag, attr))
                if name == "href":
                    self.assertTrue(value.startswith("#"), "<%s href=%r>" % (e.tag, value))
        text = self.text.replace('xmlns="http://www.w3.org/2000/svg"', "")
        for bad in ("http://", "https://", "src=", "url(", "@import", "//fonts", "<link", "<iframe", "<img"):
            self.assertNotIn(bad, text)

    def test_index_sections(self):
        db = sqlite3.connect("file:" + INDEX + "?mode=ro", uri=True)
        items = db.execute("SELECT count(*) FROM items").fetchone()[0]
        ids = {i for (i,) in db.execute("SELECT id FROM items")}
        db.close()
        with open(os.path.join(RUN, "held_out_items.txt")) as f:
            held = {line.strip() for line in f if line.strip()} & ids
        section = {s.get("id"): s for s in self.tree.iter("section")}
        points = [c for c in descendants(section["embedding-map"], "circle") if descendants(c, "title")]
        self.assertEqual(len(points), items)  # 48 items: all plotted, each with its hover title
        outlined = [c for c in points if c.get("stroke") == "#000"]
        self.assertEqual(len(outlined), len(held))
        self.assertTrue(all("held out" in descendants(c, "title")[0].text for c in outlined))
        self.assertGreater(len(descendants(section["similarity"], "rect")), 5)
        self.assertIn("median", "".join(section["similarity"].itertext()))
        rows = [[("".join(td.itertext())) for td in tr] for tr in section["retrieval"].iter("tr")]
        self.assertEqual(rows[0][:5], ["in-degree", "queries", "recall@10", "nDCG@10", "mAP@10"])
        self.assertEqual(rows[-1][0], "overall")
        self.assertEqual(int(rows[-1][1]), sum(int(r[1]) for r in rows[1:-1]))

    def test_chromium_loads_it_without_errors_and_draws(self):
        png = os.path.join(OUT, "report.png")
        problems, requests = load_page(self.page, png)
        self.assertEqual(problems, [])
        self.assertEqual(requests, ["file://" + os.path.abspath(self.page)])
        ok, why = not_blank(png)
        self.assertTrue(ok, why)

    def test_the_demos_own_report(self):
        """melgraph demo writes report.html into its folder: the same checks on that page."""
        page = os.path.join(DEMO, "report.html")
        self.assertTrue(os.path.isfile(page), "melgraph demo wrote no report.html")
        with open(page, "rb") as f:
            raw = f.read()
        tree = parse_strict(raw)
        self.assertEqual(run_metric_names() - charted_names(tree), set(), "metrics of the run in no chart")
        self.assertIn("embedding-map", {s.get("id") for s in tree.iter("section")})
        png = os.path.join(OUT, "demo-report.png")
        problems, requests = load_page(page, png)
        self.assertEqual(problems, [])
        self.assertEqual(requests, ["file://" + os.path.abspath(page)])
        ok, why = not_blank(png)
        self.assertTrue(ok, why)

    def test_refusals_are_usage_errors(self):
        for args, part in (([os.path.join(OUT, "no-such-run")], "no-such-run: no such directory"),
                           ([RUN, "--run", "99"], "no run with id 99"),
                           ([RUN, "--index", os.path.join(RUN, "config.toml")], "config.toml: not a melgraph index")):
            r = subprocess.run([EXE, "report", *args, "--out", os.path.join(OUT, "refused.html")],
                               capture_output=True, text=True, timeout=120)
            self.assertEqual(r.returncode, 2, r.stderr)
            self.assertIn(part, r.stderr)
            self.assertFalse(os.path.exists(os.path.join(OUT, "refused.html")))


class DetectorsCanFail(unittest.TestCase):
    """The checks above are worth something only if they catch what they look for."""

    def test_console_errors_exceptions_and_requests_are_caught(self):
        bad = os.path.join(OUT, "bad.html")
        with open(bad, "w") as f:
            f.write("<!DOCTYPE html><html><head><title>bad</title></head><body><p>bad page</p>"
                    "<img src=\"no-such-image.png\" alt=\"\">"
                    "<script>console.log('fine'); console.error('deliberate console error');"
                    "throw new Error('deliberate throw');</script></body></html>")
        problems, requests = load_page(bad, os.path.join(OUT, "bad.png"))
        text = "\n".join(problems)
        self.assertIn("console.error: deliberate console error", text)
        self.assertIn("deliberate throw", text)
        self.assertIn("no-such-image.png", text)  # the failed load, in the browser log
        self.assertNotIn("fine", text)  # console.log is no error
        self.assertIn("file://" + os.path.join(os.path.abspath(OUT), "no-such-image.png"), requests)

    def test_strict_parsing_rejects_broken_html(self):
        import html5lib
        with self.assertRaises(html5lib.html5parser.ParseError):
            parse_strict(b"<!DOCTYPE html><html><head><title>x</title></head><body><div></span></div></body></html>")

    def test_a_metric_missing_from_the_charts_is_found(self):
        page = REPORT["raw"]
        cut = page.replace(b'data-metrics="train.lr"', b'data-metrics=""', 1)
        self.assertNotEqual(cut, page)
        self.assertEqual(run_metric_names() - charted_names(parse_strict(cut)), {"train.lr"})

    def test_a_blank_page_is_blank(self):
        blank = os.path.join(OUT, "blank.html")
        with open(blank, "w") as f:
            f.write("<!DOCTYPE html><html><head><title>blank</title></head><body></body></html>")
        png = os.path.join(OUT, "blank.png")
        problems, _ = load_page(blank, png)
        self.assertEqual(problems, [])
        ok, why = not_blank(png)
        self.assertFalse(ok, why)


if __name__ == "__main__":
    preflight()
    os.makedirs(OUT, exist_ok=True)
    sys.argv[1:] = []
    unittest.main(verbosity=2)
