#!/usr/bin/env python3
"""README's "Bring your own music", run as written on ../shared/data/realset.

The README's run.toml block is written to run.toml and its command block is run by bash, in a
fresh folder where `my-music` links the real-music set, with the melgraph under test first on
the PATH. Then the results are checked against what the README says they are: an index of
every catalog item, 5 similar tracks of other albums for the query, the run's files, a report.

usage: test_bring_your_own_music.py README MELGRAPH REALSET WORKDIR
Exit 77 (skipped) when REALSET is absent, unless MELGRAPH_REQUIRE_REFERENCE=1.
"""
import csv
import json
import os
import shutil
import sqlite3
import subprocess
import sys

TOML_MARK = "<!-- tests/readme/test_bring_your_own_music.py writes this block to run.toml -->"
SH_MARK = "<!-- tests/readme/test_bring_your_own_music.py runs this block as written -->"


def block_after(text, mark, lang):
    """The fenced code block right after the marker line."""
    at = text.index(mark)
    start = text.index("```" + lang + "\n", at) + len("```" + lang + "\n")
    if text[at + len(mark):start - len("```" + lang + "\n")].strip():
        raise AssertionError("README: text between %r and its ```%s block" % (mark, lang))
    return text[start:text.index("```\n", start)]


def main():
    readme, exe, realset, work = sys.argv[1:5]
    if not os.path.isfile(os.path.join(realset, "catalog.csv")):
        msg = "skipped: %s is absent (the real-music set of ../shared/data)" % realset
        print(msg)
        if os.environ.get("MELGRAPH_REQUIRE_REFERENCE") == "1":
            print("MELGRAPH_REQUIRE_REFERENCE=1: failing instead")
            return 1
        return 77
    with open(readme, encoding="utf-8") as f:
        text = f.read()
    toml, commands = block_after(text, TOML_MARK, "toml"), block_after(text, SH_MARK, "sh")

    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    os.symlink(os.path.abspath(realset), os.path.join(work, "my-music"))
    with open(os.path.join(work, "run.toml"), "w", encoding="utf-8") as f:
        f.write(toml)
    env = dict(os.environ, PATH=os.path.dirname(os.path.abspath(exe)) + os.pathsep + os.environ["PATH"])
    r = subprocess.run(["bash", "-e", "-o", "pipefail", "-x", "-c", commands], cwd=work, env=env,
                       capture_output=True, text=True, timeout=1500)
    print(r.stdout)
    print(r.stderr, file=sys.stderr)
    if r.returncode != 0:
        raise AssertionError("the README's commands failed with exit code %d" % r.returncode)

    with open(os.path.join(realset, "catalog.csv"), newline="", encoding="utf-8") as f:
        catalog = {row["id"]: row for row in csv.DictReader(f)}
    db = sqlite3.connect("file:" + os.path.join(work, "index.sqlite") + "?mode=ro", uri=True)
    indexed = {i for (i,) in db.execute("SELECT id FROM items")}
    db.close()
    assert indexed == set(catalog), "the index holds %d of the %d catalog items" % (len(indexed), len(catalog))

    # The query's answer: 5 hits, none from the query's own album (--exclude-same album).
    lines = r.stdout.splitlines()
    header = max(i for i, line in enumerate(lines) if line.startswith("rank  id"))
    hits = [line.split() for line in lines[header + 1:] if line[:1].isspace() and line.split()[0].isdigit()]
    hit_ids = [h[1] for h in hits if h[1] in catalog]
    assert len(hit_ids) == 5, "expected 5 similar tracks, got:\n" + r.stdout
    assert all(catalog[i]["album"] != "Constructive" for i in hit_ids), hit_ids

    for name in ("best.safetensors", "last.safetensors", "runs.sqlite", "metrics.jsonl", "held_out_items.txt"):
        assert os.path.isfile(os.path.join(work, "run", name)), "run/" + name + " missing"
    with open(os.path.join(work, "run", "metrics.jsonl"), encoding="utf-8") as f:
        events = [json.loads(line) for line in f]
    assert events[0].get("event") == "begin" and events[-1].get("event") == "end", (events[0], events[-1])
    assert "export: the training run in run" in r.stderr, "export --run did not take the run"
    assert "(0 decoded now, 138 already there)" in r.stdout, "export decoded audio again"
    with open(os.path.join(work, "report.html"), encoding="utf-8") as f:
        page = f.read()
    assert "embedding-map" in page and "Colour: album" in page, "report.html: no map coloured by album"
    print("README's bring-your-own-music commands: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
