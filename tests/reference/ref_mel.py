"""torchaudio reference for the log-mel front end (tests/test_reference_mel.cpp).

Usage: ref_mel.py CASES_JSON OUT_SAFETENSORS [--music-dir DIR]

CASES_JSON is a list of cases, each with the MelParams fields (sample_rate, n_fft, hop,
n_mels, f_min, f_max, scale "htk"/"slaney", norm "none"/"slaney", power, log_eps), a name,
and the audio to use:
  {"source": "random", "B": .., "S": .., "seed": ..}  seeded numpy signals, float32
  {"source": "music", "files": [..], "start_s": .., "S": ..}  excerpts of DIR/<file>, mono
For each case the output holds "<name>.audio" (float32 [B, S], exactly what the C++ side
must feed to MelCpu) and "<name>.expected" (float64 [B, n_mels, F]) = log(MelSpectrogram(
audio) + log_eps), computed in float64 from those float32 samples, and "<name>.torch_f32"
(float64 [B, n_mels, F]), the same computed by torchaudio in float32. All cases run in one
process because importing torch is the slow part.
"""
import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st  # noqa: E402


def random_audio(B, S, seed, sample_rate):
    """Noise + a few tones under a slowly varying envelope, with a quiet (-80 dB) stretch so
    that some bands sit near log_eps."""
    rng = np.random.default_rng(seed)
    t = np.arange(S) / sample_rate
    out = np.empty((B, S), dtype=np.float64)
    for b in range(B):
        x = 0.1 * rng.standard_normal(S)
        for _ in range(3):
            f = rng.uniform(40.0, 0.45 * sample_rate)
            x += rng.uniform(0.05, 0.5) * np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi))
        env = 0.6 + 0.4 * np.sin(2 * np.pi * rng.uniform(0.2, 2.0) * t)
        x *= env
        q0 = int(rng.integers(S // 4, S // 2))
        x[q0:q0 + S // 8] *= 1e-4
        out[b] = x
    return out.astype(np.float32)


def music_audio(music_dir, files, start_s, S):
    import soundfile as sf

    rows = []
    for name in files:
        path = os.path.join(music_dir, name)
        data, sr = sf.read(path, dtype="float64", always_2d=True)
        if data.shape[0] < S:
            raise SystemExit(f"{path}: {data.shape[0]} frames, the excerpt needs {S}")
        start = min(int(start_s * sr), data.shape[0] - S)  # short files: their last S frames
        rows.append(data[start:start + S].mean(axis=1))
    return np.stack(rows).astype(np.float32)


def reference_log_mel(c, audio):
    """log(MelSpectrogram(audio) + log_eps) for the MelParams fields of `c` on float32 audio
    [B, S]: (expected, torch_f32), both float64 [B, n_mels, 1 + S // hop]. `expected` is
    computed in float64 from the float32 samples; `torch_f32` is torchaudio's own float32
    result, i.e. how far float32 arithmetic alone moves the log-mel (weak bands near log_eps
    sit at the float32 FFT's noise floor). Also used by ref_audio_mel.py."""
    import torch
    import torchaudio

    # The filterbank and window are built in the default dtype: make that float64 so the
    # reference is double throughout (torchaudio would otherwise build them in float32).
    torch.set_default_dtype(torch.float64)
    tf = torchaudio.transforms.MelSpectrogram(
        sample_rate=c["sample_rate"], n_fft=c["n_fft"], win_length=c["n_fft"],
        hop_length=c["hop"], f_min=c["f_min"], f_max=c["f_max"] if c["f_max"] > 0 else None,
        pad=0, n_mels=c["n_mels"], window_fn=torch.hann_window, power=c["power"],
        normalized=False, center=True, pad_mode="reflect", onesided=True,
        norm=None if c["norm"] == "none" else c["norm"], mel_scale=c["scale"])
    assert tf.mel_scale.fb.dtype == torch.float64
    with torch.no_grad():
        mel = tf(torch.from_numpy(audio.astype(np.float64)))
        mel32 = tf.to(torch.float32)(torch.from_numpy(audio))
    expected = torch.log(mel + c["log_eps"]).numpy()
    torch_f32 = torch.log(mel32.double() + c["log_eps"]).numpy()
    return (np.ascontiguousarray(expected, dtype=np.float64),
            np.ascontiguousarray(torch_f32, dtype=np.float64))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("cases")
    ap.add_argument("out")
    ap.add_argument("--music-dir", default=None)
    args = ap.parse_args()

    import torch
    import torchaudio

    with open(args.cases) as f:
        cases = json.load(f)
    tensors = {}
    for c in cases:
        if c["source"] == "random":
            audio = random_audio(c["B"], c["S"], c["seed"], c["sample_rate"])
        elif c["source"] == "music":
            if not args.music_dir:
                raise SystemExit(f"case {c['name']}: music source needs --music-dir")
            audio = music_audio(args.music_dir, c["files"], c["start_s"], c["S"])
        else:
            raise SystemExit(f"case {c['name']}: unknown source {c['source']!r}")
        expected, torch_f32 = reference_log_mel(c, audio)
        F = 1 + c["S"] // c["hop"]
        assert expected.shape == (audio.shape[0], c["n_mels"], F), expected.shape
        tensors[c["name"] + ".audio"] = audio
        tensors[c["name"] + ".expected"] = expected
        tensors[c["name"] + ".torch_f32"] = torch_f32
    st.save(args.out, tensors, {"torch": torch.__version__, "torchaudio": torchaudio.__version__})


if __name__ == "__main__":
    main()
