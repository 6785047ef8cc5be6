"""FLAC bytes -> mono int16 PCM at the target rate, with every failure classified by a reason.

Pure functions on bytes (no Beam, no file system), so the Beam DoFn, the benchmark's plain loop and
the tests share them:

    audio = decode_pcm16(open("x.flac", "rb").read(), target_sample_rate=48000)
    audio.samples  # int16 [num_samples], mono, at 48 kHz

16-bit mono files already at the target rate are returned bit-exact. Anything else is decoded to
float, downmixed by averaging channels, resampled (soxr via librosa) and rounded back to int16;
samples beyond the int16 range are clipped and counted in `clipped_samples`, never silently.
Non-finite samples (NaN, +-inf in float files) become 0 and are counted in `nonfinite_samples`.

The header's length is never trusted: the stream is read block by block until it ends (for FLAC,
its length comes from the last frame, see pipeline.flac_stream), so a header claiming 2^36 samples
allocates nothing, and a header that disagrees with the stream is noted (`header_length_mismatch`)
while the stream's audio is kept. A recording longer than `max_seconds` is refused (`too_long`)
as soon as the excess is read, before it can exhaust a worker's memory.
"""
from __future__ import annotations

import dataclasses
import io

import librosa
import numpy as np
import soundfile as sf

from core import schema
from pipeline import flac_stream

# Failure reasons (also used as dead-letter reasons and counter names).
EMPTY_FILE = "empty_file"
TRUNCATED_FLAC = "truncated_flac"
NOT_AUDIO = "not_audio"
TOO_LONG = "too_long"
NO_SUCH_CHANNEL = "no_such_channel"
FLAC_MAGIC = b"fLaC"
# Default cap on one recording (RFCX's are 60 s); ShardsConfig.max_recording_seconds overrides it.
DEFAULT_MAX_SECONDS = 600.0
# Bytes read per call while streaming. soundfile seeks back to where each read ended, which costs
# libFLAC a frame decode: 64 Ki-frame blocks made decoding ~20 % slower than one read (4 MiB: 2 Mi
# int16 frames of a mono file, 512 Ki float64 frames).
BLOCK_BYTES = 4 << 20


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
    nonfinite_samples: int = 0  # NaN/inf source samples (all channels), stored as 0
    header_frames: int | None = None  # what the header claims; None when it says "unknown"
    source_frames: int = 0  # frames actually in the stream, at source_sample_rate

    @property
    def header_length_mismatch(self) -> bool:
        """The header gives a length and the stream holds another (the stream's audio is kept)."""
        return self.header_frames is not None and self.header_frames != self.source_frames

    @property
    def num_samples(self) -> int:
        return int(self.samples.shape[0])


def _prepare(data: bytes) -> tuple[bytes, bool, int | None]:
    """(bytes for libsndfile, whether they are FLAC, STREAMINFO's frame count or None when unknown).

    FLAC: STREAMINFO's total-samples field is replaced by the stream's own length when the last
    frame is found (a 0 "unknown" field would make libsndfile lose the last frames, a wrong one would
    make it stop early or read past the end). A stream whose end is not a whole frame (cut off) keeps
    its header, and decoding then fails as truncated.
    """
    info = flac_stream.find_streaminfo(data)
    if info is None:
        return data, False, None  # not FLAC: libsndfile reads until its header's length or the end
    data = flac_stream.without_id3v1(data, info)
    true_total = flac_stream.stream_samples(data, info)
    if true_total is not None and true_total != info.total_samples:
        data = flac_stream.with_total_samples(data, info, true_total)
    return data, True, info.total_samples or None


def _open(data: bytes) -> sf.SoundFile:
    if not data:
        raise AudioError(EMPTY_FILE, "file has 0 bytes")
    try:
        return sf.SoundFile(io.BytesIO(data))
    except sf.SoundFileError as e:
        # A FLAC stream marker with an unreadable header is a cut-off file; anything else is not audio.
        reason = TRUNCATED_FLAC if data[:4] == FLAC_MAGIC else NOT_AUDIO
        raise AudioError(reason, str(e)) from e


def _max_frames(max_seconds: float, sample_rate: int) -> int:
    return int(max_seconds * sample_rate)


def _blocks(f: sf.SoundFile, dtype: str, max_seconds: float):
    """Yields [n, channels] blocks of `f` until its stream ends; the array is reused between blocks.

    `out=` keeps soundfile from sizing anything by the header's frame count (it would allocate
    the whole claimed length at once).
    """
    limit = _max_frames(max_seconds, f.samplerate)
    block_frames = max(1, BLOCK_BYTES // (f.channels * np.dtype(dtype).itemsize))
    buffer = np.empty((block_frames, f.channels), dtype=dtype)
    total = 0
    while True:
        try:
            block = f.read(block_frames, dtype=dtype, always_2d=True, out=buffer)
        except (sf.SoundFileError, EOFError) as e:
            raise AudioError(TRUNCATED_FLAC, f"{e} after {total} frames") from e
        if len(block) == 0:
            return
        total += len(block)
        if total > limit:
            raise AudioError(TOO_LONG, f"longer than {max_seconds:g} s (--max_recording_seconds) at "
                                       f"{f.samplerate} Hz; stopped reading after {total} frames")
        yield block


def to_pcm16(y: np.ndarray) -> tuple[np.ndarray, int]:
    """float [n] in [-1, 1) -> (int16 [n], number of samples clipped to the int16 range)."""
    scaled = np.round(np.asarray(y, dtype=np.float64) * schema.PCM16_SCALE)
    clipped = int(np.count_nonzero((scaled > 32767) | (scaled < -32768)))
    return np.clip(scaled, -32768, 32767).astype(np.int16), clipped


def decode_pcm16(data: bytes, target_sample_rate: int, max_seconds: float = DEFAULT_MAX_SECONDS,
                 channel: int | None = None) -> DecodedAudio:
    """Decodes audio bytes (FLAC or any libsndfile format) to mono int16 at `target_sample_rate`.

    channel: None averages the channels; N keeps channel N only (0-based; `no_such_channel` when the
    file has fewer)."""
    data, is_flac, flac_header = _prepare(data)
    nonfinite = 0
    with _open(data) as f:
        source_sr, channels = int(f.samplerate), int(f.channels)
        if channel is not None and not 0 <= channel < channels:
            raise AudioError(NO_SUCH_CHANNEL, f"channel {channel} asked for, the file has {channels} (0-based)")
        header = flac_header if is_flac else int(f.frames)
        exact = channels == 1 and source_sr == target_sample_rate and f.subtype == "PCM_16"
        if exact:  # int16 keeps 16-bit sources bit-exact
            parts = [block[:, 0].copy() for block in _blocks(f, "int16", max_seconds)]
        else:  # float64, downmixed block by block: memory stays one mono copy of the recording
            parts = []
            for block in _blocks(f, "float64", max_seconds):
                bad = ~np.isfinite(block)
                if bad.any():
                    nonfinite += int(np.count_nonzero(bad))
                    block[bad] = 0.0  # no value to keep; the count goes on the example
                parts.append(block.mean(axis=1) if channel is None else block[:, channel].copy())  # [n]
    frames = sum(len(p) for p in parts)
    if frames == 0:
        raise AudioError(EMPTY_FILE, "no audio frames")
    mono = np.concatenate(parts)
    del parts
    notes = dict(nonfinite_samples=nonfinite, header_frames=header, source_frames=frames)
    if exact:
        return DecodedAudio(mono, target_sample_rate, source_sr, channels, False, 0, **notes)
    resampled = source_sr != target_sample_rate
    if resampled:
        # fix=False keeps soxr's own length (round(n * ratio)); librosa's fix pads ceil() of a float
        # product, one sample too many for e.g. 44100 -> 48000.
        mono = librosa.resample(mono, orig_sr=source_sr, target_sr=target_sample_rate, res_type="soxr_hq",
                                fix=False)
    samples, clipped = to_pcm16(mono)
    return DecodedAudio(samples, target_sample_rate, source_sr, channels, resampled, clipped, **notes)
