"""Reference decodes for tests/test_reference_decode.cpp: libsndfile through python-soundfile,
which decodes Ogg Vorbis with libvorbis, Ogg Opus with libopus and MP3 with mpg123 (gapless:
the LAME/Xing delay and padding applied).

Usage: ref_decode.py FILE...

For each file, in order, writes to stdout one JSON line and then the samples:
  {"path": P, "ok": true, "frames": N, "rate": R, "channels": C, "format": "OGG/VORBIS",
   "lsf_intensity_stereo": B}
  followed by N float32 little-endian samples, the mean of the channels (melgraph's downmix);
or, when soundfile cannot read the file, {"path": P, "ok": false, "reason": "..."} alone.
"lsf_intensity_stereo" says whether an MP3 has MPEG-2/2.5 (low sampling frequency) frames coded
with intensity stereo, where FFmpeg's decoder and mpg123 differ (see the test).
"""
import json
import sys

import numpy as np


def mp3_frames(data):
    """Yields (mpeg_version, mode, mode_extension) of each MPEG audio layer III frame, walking
    frame by frame from the first sync after an ID3v2 tag."""
    i = 0
    if data[:3] == b"ID3" and len(data) >= 10:
        i = 10 + ((data[6] << 21) | (data[7] << 14) | (data[8] << 7) | data[9])
    mpeg1_kbps = [0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320]
    lsf_kbps = [0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160]
    rates = {3: [44100, 48000, 32000], 2: [22050, 24000, 16000], 0: [11025, 12000, 8000]}
    while i + 4 <= len(data):
        h = int.from_bytes(data[i:i + 4], "big")
        version, layer, bitrate, rate = (h >> 19) & 3, (h >> 17) & 3, (h >> 12) & 15, (h >> 10) & 3
        if (h >> 21) != 0x7FF or version == 1 or layer != 1 or bitrate in (0, 15) or rate == 3:
            i += 1
            continue
        padding = (h >> 9) & 1
        if version == 3:
            size = 144000 * mpeg1_kbps[bitrate] // rates[3][rate] + padding
        else:
            size = 72000 * lsf_kbps[bitrate] // rates[version][rate] + padding
        yield version, (h >> 6) & 3, (h >> 4) & 3
        i += size


def lsf_intensity_stereo(path):
    with open(path, "rb") as f:
        data = f.read()
    return any(v != 3 and mode == 1 and (ext & 1) for v, mode, ext in mp3_frames(data))


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
                "channels": int(x.shape[1]), "format": f"{info.format}/{info.subtype}",
                "lsf_intensity_stereo": info.format == "MP3" and lsf_intensity_stereo(path)}
        out.write((json.dumps(head) + "\n").encode())
        out.write(mono.tobytes())
    out.flush()


if __name__ == "__main__":
    main()
