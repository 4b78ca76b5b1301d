"""The `melgraph` Python module (apps/python) and README's "From Python" commands on a small demo
run (ctest's fixture: `melgraph demo` with 48 clips), as a downstream user would use it, against
what nobody here wrote: Python's sqlite3 reading the index, NumPy, and PyTorch
(tests/reference/mg_torch.py's module, loaded with load_state_dict(strict=True) from
melgraph.load_checkpoint, embedding a clip decoded by soundfile). Also checked against the
melgraph binary's own answers (query --json).

  python3 test_melgraph_module.py DEMO_DIR MELGRAPH_EXE
"""
import json
import os
import sqlite3
import subprocess
import sys
import unittest

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "reference"))
import melgraph  # noqa: E402  (PYTHONPATH: the build tree's python/)

DEMO, EXE = sys.argv[1], sys.argv[2]
INDEX = os.path.join(DEMO, "index.sqlite")


class IndexTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.ix = melgraph.Index(INDEX, threads=1)
        db = sqlite3.connect("file:" + INDEX + "?mode=ro", uri=True)
        cls.rows = db.execute("SELECT id, vector FROM items JOIN embeddings USING (item) ORDER BY item").fetchall()
        cls.meta = dict(db.execute("SELECT key, value FROM meta"))
        cls.items = {r[0]: r for r in db.execute("SELECT id, artist, extra FROM items")}

    def test_ids_and_vectors_are_the_files(self):
        ix = self.ix
        self.assertEqual(len(ix), len(self.rows))
        self.assertEqual(ix.ids, [r[0] for r in self.rows])
        want = np.stack([np.frombuffer(r[1], "<f4") for r in self.rows])
        self.assertEqual(ix.vectors.shape, want.shape)
        self.assertEqual(ix.vectors.dtype, np.float32)
        self.assertTrue(np.array_equal(ix.vectors, want))
        # Not copied, and not writable (the search reads the same memory).
        self.assertFalse(ix.vectors.flags.owndata)
        self.assertFalse(ix.vectors.flags.writeable)
        self.assertEqual(ix.meta["checkpoint_sha256"], self.meta["checkpoint_sha256"])
        self.assertEqual(ix.dim, want.shape[1])
        first = ix.item(ix.ids[0])
        self.assertEqual(first["artist"], self.items[ix.ids[0]][1])
        self.assertEqual(first["extra"], json.loads(self.items[ix.ids[0]][2]))

    def test_queries_are_the_command_lines(self):
        for item in self.ix.ids[:5]:
            out = subprocess.run([EXE, "query", "--device", "cpu", "--index", INDEX, "--item", item, "-k", "5", "--json"],
                                 check=True, capture_output=True, text=True).stdout
            want = json.loads(out)["results"]
            got = self.ix.query(item, k=5)
            self.assertEqual([h["id"] for h in got], [h["id"] for h in want])
            for g, w in zip(got, want):
                self.assertAlmostEqual(g["similarity"], w["similarity"], delta=1e-6)
                self.assertEqual(g["rank"], w["rank"])

    def test_vectors_batches_and_filters(self):
        ix = self.ix
        v = np.array(ix.vectors[3], dtype=np.float64) * 2.5  # any length: normalised
        self.assertEqual(ix.query(v, k=1)[0]["id"], ix.ids[3])
        ids = ix.ids[:7]
        batch = ix.query_batch(ids, k=4)
        self.assertEqual(len(batch), 7)
        for item, hits in zip(ids, batch):
            self.assertEqual([h["id"] for h in hits], [h["id"] for h in ix.query(item, k=4)])
        from_array = ix.query_batch(np.array(ix.vectors[:3]), k=1)
        self.assertEqual([h[0]["id"] for h in from_array], ix.ids[:3])
        q = ix.ids[0]
        artist = self.items[q][1]
        style = json.loads(self.items[q][2])["style"]
        hits = ix.query(q, k=5, where={"style": style}, exclude_same="artist")
        self.assertTrue(hits)
        for h in hits:
            self.assertEqual(json.loads(self.items[h["id"]][2])["style"], style)
            self.assertNotEqual(self.items[h["id"]][1], artist)
        self.assertEqual(ix.query(q, k=5, where={"style": "x' OR '1'='1"}), [])

    def test_bad_input_raises_melgraph_error(self):
        with self.assertRaisesRegex(melgraph.Error, "no item 'nope' in the index"):
            self.ix.query("nope")
        self.assertTrue(issubclass(melgraph.Error, ValueError))
        with self.assertRaisesRegex(melgraph.Error, "no item has a catalog column 'genre'"):
            self.ix.query(self.ix.ids[0], where={"genre": "rock"})
        with self.assertRaisesRegex(melgraph.Error, "no such index file"):
            melgraph.Index(os.path.join(DEMO, "absent.sqlite"))
        with self.assertRaisesRegex(melgraph.Error, "a vector of"):
            self.ix.query(np.zeros(3))


class CheckpointTest(unittest.TestCase):
    def test_embed_matches_the_index_and_pytorch(self):
        ix = melgraph.Index(INDEX)
        ckpt = ix.meta["checkpoint"]
        path = ix.item(ix.ids[2])["path"]
        v = melgraph.embed(path, ckpt, crops=int(ix.meta["crops"]), threads=1)
        self.assertEqual(v.shape, (ix.dim,))
        # The file decoded afresh against the cache's int16 copy the index was embedded from.
        self.assertGreater(float(v @ ix.vectors[2]), 0.9999)

        import mg_torch
        import soundfile
        import torch

        params = melgraph.load_checkpoint(ckpt)
        self.assertFalse([k for k in params if k.startswith("optim.")])
        cfg, st_params = mg_torch.load_checkpoint(ckpt)
        self.assertEqual(sorted(params), sorted(st_params))
        net = mg_torch.make_net(cfg)
        net.load_state_dict({k: torch.from_numpy(a) for k, a in params.items()}, strict=True)
        net.eval()
        audio, rate = soundfile.read(path, dtype="float32")
        self.assertEqual(rate, cfg["audio"]["sample_rate"])
        if audio.ndim > 1:
            audio = audio.mean(axis=1)
        S = int(round(cfg["audio"]["clip_seconds"] * rate))
        start = (len(audio) - S) // 2 if len(audio) > S else 0  # embed's one crop: centred
        clip = torch.from_numpy(np.ascontiguousarray(audio[start:start + S]))[None, :]
        with torch.no_grad():
            want = net.embed(mg_torch.log_mel(mg_torch.mel_transform(cfg), clip, cfg))[0].numpy()
        got = melgraph.embed(path, ckpt, crops=1, threads=1)
        # float32 on both sides (cuFFT-free CPU mel vs torchaudio's): the same direction.
        self.assertGreater(float(got @ want), 0.9999, (got[:4], want[:4]))

    def test_optimizer_tensors_only_when_asked(self):
        last = os.path.join(DEMO, "run", "last.safetensors")
        with_opt = melgraph.load_checkpoint(last, optimizer=True)
        without = melgraph.load_checkpoint(last)
        self.assertTrue(any(k.startswith("optim.") for k in with_opt))
        self.assertFalse(any(k.startswith("optim.") for k in without))
        with self.assertRaises(melgraph.Error):
            melgraph.load_checkpoint(INDEX)

    def test_runs_are_the_metrics_table(self):
        db_path = os.path.join(DEMO, "run", "runs.sqlite")
        rows = melgraph.runs(db_path)
        db = sqlite3.connect("file:" + db_path + "?mode=ro", uri=True)
        self.assertEqual(len(rows), db.execute("SELECT count(*) FROM metrics").fetchone()[0])
        losses = [r for r in rows if r["name"] == "train.loss"]
        self.assertTrue(losses)
        self.assertEqual({r["run_name"] for r in rows} - {None}, {r[0] for r in db.execute("SELECT name FROM runs")})


class ReadmeTest(unittest.TestCase):
    def test_the_readme_examples_run(self):
        """README's "From Python" commands, as written, in a folder where melgraph-demo/ is this
        test's demo run and build/ and tests/ are the build and source trees."""
        import tempfile

        here = os.path.dirname(os.path.abspath(__file__))
        source = os.path.normpath(os.path.join(here, "..", ".."))
        build = os.path.dirname(os.path.dirname(os.path.abspath(melgraph.__file__)))
        text = open(os.path.join(source, "README.md"), encoding="utf-8").read()
        start = text.index("export PYTHONPATH=build/python\n")
        block = text[start:text.index("```", start)]
        self.assertGreaterEqual(block.count("/usr/bin/python3 -c"), 5, block)
        with tempfile.TemporaryDirectory() as work:
            for name, target in (("melgraph-demo", DEMO), ("build", build), ("tests", os.path.join(source, "tests"))):
                os.symlink(os.path.abspath(target), os.path.join(work, name))
            env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
            r = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=work, env=env, capture_output=True,
                               text=True)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertIn("All keys matched successfully", r.stdout)


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
