"""Generated recordings for the detection job's tests: mixed formats, rates, lengths and channel counts,
and bad files, written with soundfile from synthetic signals.

    good, bad = write_field_audio(folder)   # {recording_id: path}, {recording_id: expected dead-letter reason}
"""
from __future__ import annotations

import os

import numpy as np
import soundfile as sf

# id -> (file name, sample rate, seconds, channels, subtype): one shorter than the fake export's 0.5 s window.
GOOD = {
    "tone_8k": ("tone_8k.flac", 8000, 3.0, 1, "PCM_16"),
    "stereo_16k": ("stereo_16k.wav", 16000, 2.3, 2, "PCM_16"),
    "site2/ogg_22k": ("site2/ogg_22k.ogg", 22050, 1.7, 1, "VORBIS"),
    "short_11k": ("short_11k.flac", 11025, 0.2, 1, "PCM_16"),
    "three_ch_44k": ("three_ch_44k.wav", 44100, 1.1, 3, "FLOAT"),
}
BAD = {"empty": ("empty.flac", "empty_file"), "text": ("text.wav", "not_audio"),
       "cut": ("cut.flac", "truncated_flac"), "pipe": ("pipe.flac", "not_a_file")}


def signal(sample_rate: int, seconds: float, channels: int, seed: int) -> np.ndarray:
    """float [n, channels]: a different tone per channel (rising with the channel) that steps up every 0.4 s
    (so windows of one recording score differently), plus a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * sample_rate))) / sample_rate
    step = 1.0 + (t // 0.4) % 4 * 0.6
    tones = [0.4 * np.sin(2 * np.pi * np.cumsum((300 + 700 * c + 100 * seed) * step) / sample_rate)
             for c in range(channels)]
    return np.stack(tones, axis=1) + 0.02 * rng.standard_normal((len(t), channels))


def write_field_audio(folder: str, with_bad: bool = True) -> tuple[dict[str, str], dict[str, str]]:
    good = {}
    for i, (rid, (name, sr, seconds, channels, subtype)) in enumerate(sorted(GOOD.items())):
        path = os.path.join(folder, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        sf.write(path, signal(sr, seconds, channels, i), sr, subtype=subtype)
        good[rid] = path
    bad = {}
    if with_bad:
        open(os.path.join(folder, "empty.flac"), "wb").close()
        with open(os.path.join(folder, "text.wav"), "w") as f:
            f.write("not a recording\n")
        with open(good["tone_8k"], "rb") as f:
            head = f.read(300)
        with open(os.path.join(folder, "cut.flac"), "wb") as f:
            f.write(head)
        os.mkfifo(os.path.join(folder, "pipe.flac"))
        bad = {rid: reason for rid, (_, reason) in BAD.items()}
    with open(os.path.join(folder, "notes.txt"), "w") as f:
        f.write("field notes: not audio, ignored\n")
    return good, bad
