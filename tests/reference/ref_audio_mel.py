"""torchaudio reference for `melgraph mel` (tests/test_reference_audio_mel.cpp).

Usage: ref_audio_mel.py CASES_JSON OUT_SAFETENSORS

CASES_JSON is a list of cases, each with the MelParams fields (as for ref_mel.py), a name,
and "samples": a float32 .npy [S] that `melgraph mel --samples-out` wrote, i.e. the decoded
samples melgraph computed its log-mel from. For each case the output holds "<name>.expected"
and "<name>.torch_f32", float64 [n_mels, 1 + S // hop] (see ref_mel.reference_log_mel), so the
comparison sees bit-identical input on both sides and tests the front end, not the decoder.
With "source" (the audio file), "<name>.source_frames" (int64 [1]) is its length in frames as
libsndfile reads it, for checking how much melgraph decoded.
"""
import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st  # noqa: E402
from ref_mel import reference_log_mel  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("cases")
    ap.add_argument("out")
    args = ap.parse_args()

    import torch
    import torchaudio

    with open(args.cases) as f:
        cases = json.load(f)
    tensors = {}
    for c in cases:
        samples = np.load(c["samples"])
        if samples.dtype != np.float32 or samples.ndim != 1:
            raise SystemExit(f"{c['samples']}: expected float32 [S], got {samples.dtype} {samples.shape}")
        expected, torch_f32 = reference_log_mel(c, samples[None, :])
        F = 1 + samples.shape[0] // c["hop"]
        assert expected.shape == (1, c["n_mels"], F), expected.shape
        tensors[c["name"] + ".expected"] = expected[0]
        tensors[c["name"] + ".torch_f32"] = torch_f32[0]
        if "source" in c:
            import soundfile as sf

            tensors[c["name"] + ".source_frames"] = np.array([sf.info(c["source"]).frames], dtype=np.int64)
    st.save(args.out, tensors, {"torch": torch.__version__, "torchaudio": torchaudio.__version__})


if __name__ == "__main__":
    main()
