"""FLAC bytes -> mono int16 PCM at the target rate, with every failure classified by a reason.

Pure functions on bytes (no Beam, no file system), so the Beam DoFn, the benchmark's plain loop and
the tests share them:

    audio = decode_pcm16(open("x.flac", "rb").read(), target_sample_rate=48000)
    audio.samples  # int16 [num_samples], mono, at 48 kHz

16-bit mono files already at the target rate are returned bit-exact. Anything else is decoded to
float, downmixed by averaging channels, resampled (soxr via librosa) and rounded back to int16;
samples beyond the int16 range are clipped and counted in `clipped_samples`, never silently.
"""
from __future__ import annotations

import dataclasses
import io

import librosa
import numpy as np
import soundfile as sf

# Failure reasons (also used as dead-letter reasons and counter names).
EMPTY_FILE = "empty_file"
TRUNCATED_FLAC = "truncated_flac"
NOT_AUDIO = "not_audio"
FLAC_MAGIC = b"fLaC"


class AudioError(Exception):
    """The bytes are not decodable audio; `reason` is one of the constants above."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclasses.dataclass(frozen=True)
class DecodedAudio:
    """A decoded recording and what was done to it."""

    samples: np.ndarray  # int16 [num_samples], mono, at sample_rate
    sample_rate: int
    source_sample_rate: int
    source_channels: int
    resampled: bool
    clipped_samples: int

    @property
    def num_samples(self) -> int:
        return int(self.samples.shape[0])


def _open(data: bytes) -> sf.SoundFile:
    if not data:
        raise AudioError(EMPTY_FILE, "file has 0 bytes")
    try:
        return sf.SoundFile(io.BytesIO(data))
    except sf.SoundFileError as e:
        # A FLAC stream marker with an unreadable header is a cut-off file; anything else is not audio.
        reason = TRUNCATED_FLAC if data[:4] == FLAC_MAGIC else NOT_AUDIO
        raise AudioError(reason, str(e)) from e


def to_pcm16(y: np.ndarray) -> tuple[np.ndarray, int]:
    """float [n] in [-1, 1) -> (int16 [n], number of samples clipped to the int16 range)."""
    scaled = np.round(np.asarray(y, dtype=np.float64) * 32768.0)
    clipped = int(np.count_nonzero((scaled > 32767) | (scaled < -32768)))
    return np.clip(scaled, -32768, 32767).astype(np.int16), clipped


def decode_pcm16(data: bytes, target_sample_rate: int) -> DecodedAudio:
    """Decodes audio bytes (FLAC or any libsndfile format) to mono int16 at `target_sample_rate`."""
    with _open(data) as f:
        expected, source_sr, channels = int(f.frames), int(f.samplerate), int(f.channels)
        exact = channels == 1 and source_sr == target_sample_rate and f.subtype == "PCM_16"
        try:
            # [frames, channels]; int16 keeps 16-bit sources bit-exact, float64 for anything to be mixed.
            raw = f.read(dtype="int16" if exact else "float64", always_2d=True)
        except (sf.SoundFileError, EOFError) as e:
            raise AudioError(TRUNCATED_FLAC, str(e)) from e
    if raw.shape[0] < expected:
        raise AudioError(TRUNCATED_FLAC, f"header says {expected} frames, decoded {raw.shape[0]}")
    if raw.shape[0] == 0:
        raise AudioError(EMPTY_FILE, "no audio frames")
    if exact:
        return DecodedAudio(raw[:, 0].copy(), target_sample_rate, source_sr, channels, False, 0)
    mono = raw.mean(axis=1)  # [frames]
    resampled = source_sr != target_sample_rate
    if resampled:
        # fix=False keeps soxr's own length (round(n * ratio)); librosa's fix pads ceil() of a float
        # product, one sample too many for e.g. 44100 -> 48000.
        mono = librosa.resample(mono, orig_sr=source_sr, target_sr=target_sample_rate, res_type="soxr_hq",
                                fix=False)
    samples, clipped = to_pcm16(mono)
    return DecodedAudio(samples, target_sample_rate, source_sr, channels, resampled, clipped)
