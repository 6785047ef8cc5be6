"""What the trainer benchmarks share: the machine's description, its CPU's bfloat16 features, peak
memory, load averages, medians, and the demo data they build when missing.

    from benchmarks import common
    common.machine_info()            # cores, platform, library versions, CPU model and bf16/AMX flags
    common.cpu_features(open("/proc/cpuinfo").read())  # {"avx512_bf16": True, "amx_bf16": ..., ...}
    common.reset_peak_rss(); ...; common.peak_rss_mib()   # this process's peak RSS since the reset
"""
from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
from typing import Any, Sequence

DEFAULT_DATA, DEFAULT_SHARDS = "data/demo", "data/shards/demo"
# CPU flags (as Linux names them in /proc/cpuinfo) that decide whether bfloat16 pays on a CPU:
# avx512_bf16 converts and multiplies bfloat16 in AVX-512 registers, the AMX tiles (amx_tile +
# amx_bf16) multiply bfloat16 matrices; without either, oneDNN emulates bfloat16 in float32.
BF16_FLAGS = ("avx512f", "avx512_bf16", "amx_tile", "amx_bf16")


def cpu_features(cpuinfo: str) -> dict[str, Any]:
    """{"model": first "model name", flag: present, ...} for BF16_FLAGS, from /proc/cpuinfo text.

    A flag counts as present when the first processor lists it (they all list the same on one
    machine); text without a flags line (not Linux) gives False for every flag.
    """
    model = re.search(r"^model name\s*:\s*(.*)$", cpuinfo, re.MULTILINE)
    flags = re.search(r"^flags\s*:\s*(.*)$", cpuinfo, re.MULTILINE)
    present = set(flags.group(1).split()) if flags else set()
    return {"model": model.group(1).strip() if model else platform.processor(),
            **{flag: flag in present for flag in BF16_FLAGS}}


def read_cpu_features() -> dict[str, Any]:
    try:
        with open("/proc/cpuinfo") as f:
            return cpu_features(f.read())
    except OSError:
        return cpu_features("")


def machine_info() -> dict[str, Any]:
    """Cores, platform and the versions that matter for the timings."""
    import keras
    import librosa
    import numpy as np
    import tensorflow as tf

    return {
        "cpu_count": os.cpu_count(),
        "cpu": read_cpu_features(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "librosa": librosa.__version__,
        # oneDNN (on by default on x86 Linux) is what runs bfloat16 on the CPU's AMX / AVX-512 units.
        "TF_ENABLE_ONEDNN_OPTS": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "(unset: TF's default)"),
    }


def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            match = re.search(rf"^{field}:\s+(\d+) kB", f.read(), re.MULTILINE)
    except OSError:
        return None
    return int(match.group(1)) if match else None


def reset_peak_rss() -> bool:
    """Resets this process's peak RSS (Linux: 5 > /proc/self/clear_refs); False where it cannot."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_mib() -> float | None:
    """This process's peak resident memory (VmHWM) since start or the last reset_peak_rss, MiB."""
    kib = _status_kib("VmHWM")
    return None if kib is None else round(kib / 1024, 1)


def load_average() -> float:
    return round(os.getloadavg()[0], 2)


def median_by(runs: Sequence[dict[str, Any]], key: str) -> dict[str, Any]:
    """The run with the median `key` (the lower middle one for an even count)."""
    ordered = sorted(runs, key=lambda r: r[key])
    return ordered[(len(ordered) - 1) // 2]


def ensure_demo_data(data_dir: str | None, shards_dir: str) -> None:
    """Builds the default demo dataset and shards when missing (the Makefile's on-demand rule).

    Other paths are the caller's to provide: nothing is built for them.
    """
    if shards_dir != DEFAULT_SHARDS or data_dir not in (None, DEFAULT_DATA):
        return
    if not os.path.exists(os.path.join(DEFAULT_DATA, "train_tp.csv")):
        subprocess.run([sys.executable, "-m", "pipeline.demo_data", DEFAULT_DATA], check=True)
    if not os.path.exists(os.path.join(DEFAULT_SHARDS, "manifest.json")):
        subprocess.run([sys.executable, "-m", "pipeline.shards", "--data_dir", DEFAULT_DATA,
                        "--output_dir", DEFAULT_SHARDS], check=True)
