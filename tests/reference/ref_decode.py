"""Reference decodes for tests/test_reference_audio_decode.cpp: libsndfile through
python-soundfile, which decodes Ogg Vorbis with libvorbis, Ogg Opus with libopus and MP3 with
libmpg123 (gapless: the LAME/Xing delay and padding applied).

Usage: ref_decode.py FILE...

For each file, in order, writes to stdout one JSON line and then the samples:
  {"path": P, "ok": true, "frames": N, "rate": R, "channels": C, "format": "OGG/VORBIS"}
  followed by N float32 little-endian samples, the mean of the channels (melgraph's downmix);
or, when soundfile cannot read the file, {"path": P, "ok": false, "reason": "..."} alone.
"""
import json
import sys

import numpy as np


def main():
    import soundfile as sf

    out = sys.stdout.buffer
    for path in sys.argv[1:]:
        try:
            x, rate = sf.read(path, dtype="float32", always_2d=True)
            info = sf.info(path)
        except Exception as e:  # soundfile raises RuntimeError, LibsndfileError, ...
            out.write((json.dumps({"path": path, "ok": False, "reason": str(e)}) + "\n").encode())
            continue
        mono = x.astype(np.float64).mean(axis=1).astype("<f4")
        head = {"path": path, "ok": True, "frames": int(mono.shape[0]), "rate": int(rate),
                "channels": int(x.shape[1]), "format": f"{info.format}/{info.subtype}"}
        out.write((json.dumps(head) + "\n").encode())
        out.write(mono.tobytes())
    out.flush()


if __name__ == "__main__":
    main()
