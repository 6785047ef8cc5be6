"""After the Beam job: its counters and output files -> manifest.json content, the checks the counts
must pass before it is written, and the closing summary.

    counters = read_counters(result)                      # {counter name: value}, summed over steps
    manifest = build_manifest(cfg, inputs, counters)      # dict; core.manifest.Manifest.from_dict reads it
    problems = count_mismatches(manifest["counts"])       # [] when every input is an example or a dead letter
    print("\n".join(summary_lines(manifest, counters)))

The layout (file names, globs) comes from core.manifest, which the trainer reads with.
"""
from __future__ import annotations

import collections
import dataclasses

from apache_beam.metrics.metric import MetricsFilter

from core import fs, schema
from core import manifest as layout
from pipeline import examples, labels, transforms
from pipeline.config import ShardsConfig
from pipeline.job_inputs import JobInputs


def read_counters(result) -> dict[str, int]:
    """The job's counters by name, summed over steps (committed where the runner reports it)."""
    totals: dict[str, int] = collections.Counter()
    for c in result.metrics().query(MetricsFilter().with_namespace(transforms.NAMESPACE))["counters"]:
        value = c.committed if c.committed is not None else c.attempted
        totals[c.key.metric.name] += int(value or 0)
    return dict(totals)


def _relative(out: str, pattern: str) -> list[str]:
    """Files matching `pattern` (relative to `out`), relative to `out`, sorted."""
    prefix = out.rstrip("/") + "/"
    found = fs.glob(fs.join(out, pattern))
    return sorted(p[len(prefix):] if p.startswith(prefix) else p for p in found)


def _prefixed(counters: dict[str, int], prefix: str) -> dict[str, int]:
    return {k[len(prefix):]: v for k, v in sorted(counters.items()) if k.startswith(prefix)}


def build_manifest(cfg: ShardsConfig, inputs: JobInputs, counters: dict[str, int]) -> dict:
    """manifest.json content: shard lists (relative to OUT), counts and provenance."""
    out = cfg.output_dir
    kinds = schema.SLICE_KINDS
    by_kind = {str(k): {kind: _relative(out, layout.shard_glob(layout.train_prefix(k, kind))) for kind in kinds}
               for k in range(cfg.num_folds)}
    rejected = {kind: _prefixed(counters, f"rejected_{kind}_") for kind in kinds + (examples.TEST,)}
    by_reason: dict[str, int] = collections.Counter()
    for d in rejected.values():
        by_reason.update(d)
    per_kind = {kind: counters.get(transforms.kind_counter(kind), 0) for kind in kinds}
    counts = {
        "tp_rows": len(inputs.tp.rows),
        "fp_rows": len(inputs.fp.rows) if inputs.fp else 0,
        "training_recordings": inputs.training_recordings,
        "background_slices": inputs.background_slices,
        "train_examples": counters.get(transforms.TRAIN_EXAMPLES, 0),
        "train_examples_per_kind": per_kind,
        "tp_rejected": sum(rejected[schema.KIND_TP].values()),
        "fp_rejected": sum(rejected[schema.KIND_FP].values()),
        "background_rejected": sum(rejected[schema.KIND_BACKGROUND].values()),
        "train_examples_per_fold": {str(k): counters.get(transforms.fold_counter(k), 0)
                                    for k in range(cfg.num_folds)},
        "train_examples_per_fold_kind": {str(k): {kind: counters.get(transforms.fold_kind_counter(k, kind), 0)
                                                  for kind in kinds} for k in range(cfg.num_folds)},
        "train_examples_per_species": {str(s): counters.get(transforms.species_counter(s), 0)
                                       for s in range(cfg.num_classes)},
        "fp_examples_per_species": {str(s): counters.get(transforms.species_counter(s, schema.KIND_FP), 0)
                                    for s in range(cfg.num_classes)},
        "test_files": inputs.test_files,
        "test_examples": counters.get(transforms.TEST_EXAMPLES, 0),
        "test_rejected": sum(rejected[examples.TEST].values()),
        "rejected_by_reason": dict(sorted(by_reason.items())),
        "rejected_by_kind": rejected,
        "bad_files": _prefixed(counters, "bad_file_"),
        "recordings_resampled": counters.get(transforms.RECORDINGS_RESAMPLED, 0),
        "recordings_downmixed": counters.get(transforms.RECORDINGS_DOWNMIXED, 0),
        "clipped_samples": counters.get(transforms.CLIPPED_SAMPLES, 0),
        "unlabelled_train_files": inputs.unlabelled_train_files,
        "audio": {name: counters.get(name, 0) for name in transforms.AUDIO_NOTES},
        "recordings_failed": counters.get(transforms.RECORDINGS_FAILED, 0),
    }
    inputs_info = {labels.TP_CSV: {"sha256": inputs.tp.sha256, "rows": len(inputs.tp.rows)}}
    if inputs.fp:
        inputs_info[labels.FP_CSV] = {"sha256": inputs.fp.sha256, "rows": len(inputs.fp.rows)}
    return {
        "schema_version": schema.SCHEMA_VERSION,
        "num_classes": cfg.num_classes,
        "sample_rate": cfg.sample_rate,
        "slice_seconds": cfg.slice_seconds,
        "num_folds": cfg.num_folds,
        "fold_seed": cfg.fold_seed,
        "files": {
            "train": {k: sorted(p for paths in of_fold.values() for p in paths) for k, of_fold in by_kind.items()},
            "train_by_kind": by_kind,
            "test": _relative(out, layout.shard_glob(layout.TEST_PREFIX)),
            "rejected": _relative(out, layout.shard_glob(layout.REJECTED_PREFIX, layout.REJECTED_SUFFIX)),
        },
        "counts": counts,
        "test_set": {**inputs.split.as_dict(), "ignored_files": list(inputs.ignored_files)},
        "config": dataclasses.asdict(cfg),
        "inputs": inputs_info,
    }


def count_mismatches(counts: dict) -> list[str]:
    """Broken invariants; [] when all hold.

    Every tp row, fp row, background slice and test file is an example or a dead letter, and the
    per-kind and per-fold counts sum to the total.
    """
    problems = []
    per_kind = counts["train_examples_per_kind"]
    for kind, inputs in ((schema.KIND_TP, "tp_rows"), (schema.KIND_FP, "fp_rows"),
                         (schema.KIND_BACKGROUND, "background_slices")):
        if per_kind[kind] + counts[f"{kind}_rejected"] != counts[inputs]:
            problems.append(f"{kind} examples {per_kind[kind]} + rejected {counts[f'{kind}_rejected']} "
                            f"!= {inputs.replace('_', ' ')} {counts[inputs]}")
    if sum(per_kind.values()) != counts["train_examples"]:
        problems.append(f"examples per kind {per_kind} do not sum to train examples {counts['train_examples']}")
    if sum(counts["train_examples_per_fold"].values()) != counts["train_examples"]:
        problems.append(f"examples per fold {counts['train_examples_per_fold']} do not sum to train examples "
                        f"{counts['train_examples']}")
    if counts["test_examples"] + counts["test_rejected"] != counts["test_files"]:
        problems.append(f"test examples {counts['test_examples']} + rejected test files "
                        f"{counts['test_rejected']} != test files {counts['test_files']}")
    return problems


def summary_lines(manifest: dict, counters: dict[str, int]) -> list[str]:
    c = manifest["counts"]
    lines = ["counters:"] + [f"  {k}: {v}" for k, v in sorted(counters.items())]
    k = c["train_examples_per_kind"]
    lines += [
        f"tp: {c['tp_rows']} rows -> {k['tp']} examples + {c['tp_rejected']} rejected",
        f"fp: {c['fp_rows']} rows -> {k['fp']} examples + {c['fp_rejected']} rejected",
        f"background: {c['background_slices']} slices ({manifest['config']['background_per_recording']} x "
        f"{c['training_recordings']} training recordings) -> {k['background']} examples + "
        f"{c['background_rejected']} rejected",
        f"train examples per fold {c['train_examples_per_fold']}",
        f"test: {c['test_files']} files -> {c['test_examples']} examples + {c['test_rejected']} rejected",
        f"resampled {c['recordings_resampled']}, downmixed {c['recordings_downmixed']}, "
        f"clipped samples {c['clipped_samples']}, unlabelled train files {c['unlabelled_train_files']}",
    ]
    lines += [f"rejected {k}: {v}" for k, v in c["rejected_by_reason"].items()]
    lines += [f"audio: {', '.join(f'{k} {v}' for k, v in c['audio'].items())}"]
    lines.append("counts add up: every tp row, fp row, background slice and test file is an example or a dead letter")
    return lines


