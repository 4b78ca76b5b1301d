"""Reads a melgraph index with nothing but Python's sqlite3 and NumPy, as a downstream user
would, and checks it against the .npy export of the same index (melgraph export-npy):

  python3 read_index.py INDEX.sqlite PREFIX     (PREFIX.npy, PREFIX.ids.txt)

- PRAGMA application_id / user_version and meta (format, dim, metric, normalized);
- the embeddings BLOBs, decoded as little-endian float32 ('<f4'), equal the .npy byte for byte,
  row i = items.item i, in the order of the ids file;
- every vector is unit-norm (float64 norm within 1e-5 of 1);
- (schema 2) each item's content_sha256 is hashlib's SHA-256 of its audio file, and every
  vector's checkpoint_sha256 is meta's.
Exits non-zero with a message on the first mismatch.
"""
import hashlib
import sqlite3
import sys

import numpy as np


def fail(msg):
    print("read_index.py: " + msg, file=sys.stderr)
    sys.exit(1)


def main():
    index, prefix = sys.argv[1], sys.argv[2]
    db = sqlite3.connect("file:" + index + "?mode=ro", uri=True)
    app_id = db.execute("PRAGMA application_id").fetchone()[0]
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if app_id != 0x4D474958:
        fail("application_id %#x, expected 0x4d474958 ('MGIX')" % app_id)
    if version != 2:
        fail("user_version %d, expected 2" % version)
    meta = dict(db.execute("SELECT key, value FROM meta"))
    for key, want in (("format", "melgraph-index"), ("metric", "cosine"), ("normalized", "true")):
        if meta.get(key) != want:
            fail("meta %s = %r, expected %r" % (key, meta.get(key), want))
    dim = int(meta["dim"])

    rows = db.execute(
        "SELECT items.item, items.id, embeddings.vector FROM items JOIN embeddings USING (item) ORDER BY items.item"
    ).fetchall()
    if len(rows) != int(meta["items"]):
        fail("%d rows, meta items says %s" % (len(rows), meta["items"]))
    vectors = np.stack([np.frombuffer(blob, dtype="<f4") for _, _, blob in rows])
    if vectors.shape != (len(rows), dim):
        fail("vectors of shape %s, expected (%d, %d)" % (vectors.shape, len(rows), dim))
    if [r[0] for r in rows] != list(range(len(rows))):
        fail("items are not numbered 0..n-1")

    npy = np.load(prefix + ".npy")
    if npy.dtype != np.dtype("<f4") or npy.shape != vectors.shape:
        fail("npy %s %s vs index %s" % (npy.dtype, npy.shape, vectors.shape))
    if npy.tobytes() != vectors.tobytes():
        bad = np.argwhere(npy.view(np.uint32) != vectors.view(np.uint32))
        fail("npy and index differ at %d elements, first %s" % (len(bad), bad[0].tolist()))
    with open(prefix + ".ids.txt", encoding="utf-8") as f:
        ids = f.read().split("\n")
    if ids[-1] != "" or ids[:-1] != [r[1] for r in rows]:
        fail("the ids file is not the items' ids in row order")

    for item, path, digest in db.execute("SELECT item, path, content_sha256 FROM items ORDER BY item"):
        with open(path, "rb") as f:
            want = hashlib.sha256(f.read()).hexdigest()
        if digest != want:
            fail("item %d (%s): content_sha256 %s, hashlib says %s" % (item, path, digest, want))
    stamps = {r[0] for r in db.execute("SELECT DISTINCT checkpoint_sha256 FROM embeddings")}
    if stamps != {meta["checkpoint_sha256"]}:
        fail("embeddings.checkpoint_sha256 holds %s, expected only meta's %s" % (stamps, meta["checkpoint_sha256"]))

    norms = np.linalg.norm(vectors.astype(np.float64), axis=1)
    if np.max(np.abs(norms - 1.0)) > 1e-5:
        fail("vector norms off 1 by up to %g" % np.max(np.abs(norms - 1.0)))
    print("index %s: %d x %d vectors equal the npy export byte for byte" % (index, len(rows), dim))


if __name__ == "__main__":
    main()
