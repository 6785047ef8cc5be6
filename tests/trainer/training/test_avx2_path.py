"""The AVX2 path runs: tiny-preset training steps in a process whose oneDNN is limited to AVX2.

ONEDNN_MAX_CPU_ISA=AVX2 makes oneDNN (TensorFlow's convolutions and matmuls on x86) dispatch as on a CPU
without AVX-512 or AMX, the common cloud VM; ONEDNN_VERBOSE=1 makes it print one line per primitive it
runs, naming the implementation ("brg_conv_fwd:avx2", "jit:uni", ...). On a machine that has AVX-512
the test proves the limit holds; on an AVX2-only one it still proves training runs there.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys

from tests.helpers.recipe_config import as_config_file_content, recipe_config

# Runs in a fresh interpreter: oneDNN reads its environment once, when TensorFlow first uses it.
_TRAIN_STEPS = """
import json, sys
import keras
from trainer.data import discovery, inputs
from trainer.model import network, strategy
from trainer.recipe import config

shards, settings, out = sys.argv[1:]
with open(settings) as f:
    cfg = config.apply_overrides(config.preset_config("tiny"), json.load(f))
fold = discovery.prepare_fold(shards, 0, cfg)
strategy.set_precision(strategy.resolve("default"), cfg.mixed_precision)
keras.utils.set_random_seed(cfg.seed)
net = network.build_model(cfg, discovery.input_shape(cfg))
network.compile_model(net, cfg, cfg.steps_per_epoch)
stream = inputs.train_dataset(fold.train_files_by_kind, cfg, cfg.batch_size, steps_per_epoch=cfg.steps_per_epoch)
history = net.fit(stream, epochs=1, steps_per_epoch=cfg.steps_per_epoch, verbose=0)
with open(out, "w") as f:
    json.dump({"loss": history.history["loss"], "steps": int(net.optimizer.iterations.numpy())}, f)
"""

# The tiny preset's sizes, every recipe setting explicit; no band_norm (it needs training statistics), no XLA
# (XLA's own CPU code would bypass oneDNN).
RECIPE = recipe_config({"batch_size": 4, "epochs": 1, "steps_per_epoch": 2, "band_norm": False,
                        "jit_compile": "off", "verbose": 0})


def _primitives(verbose_output: str) -> list[tuple[str, str]]:
    """(primitive kind, implementation) of each oneDNN primitive execution line of ONEDNN_VERBOSE=1 output.

    Lines look like "onednn_verbose,v1,primitive,exec,cpu,convolution,brg_conv_fwd:avx2,forward_training,...".
    """
    out = []
    for line in verbose_output.splitlines():
        fields = line.split(",")
        if fields[:4] == ["onednn_verbose", "v1", "primitive", "exec"] and len(fields) > 6:
            out.append((fields[5], fields[6]))
    return out


def test_tiny_training_steps_run_on_onednn_avx2_kernels_only(tiny_shards, tmp_path):
    settings, out = tmp_path / "recipe.json", tmp_path / "result.json"
    settings.write_text(json.dumps(as_config_file_content(RECIPE)))
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2", "ONEDNN_VERBOSE": "1", "TF_ENABLE_ONEDNN_OPTS": "1",
           "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run([sys.executable, "-c", _TRAIN_STEPS, tiny_shards, str(settings), str(out)],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["steps"] == 2 and all(math.isfinite(v) for v in result["loss"])

    output = proc.stdout + proc.stderr
    # oneDNN's start-up line names the ISA it dispatches for ("Intel AVX2"; "Intel AVX-512 ..." unlimited).
    isa = [line for line in output.splitlines() if line.startswith("onednn_verbose,v1,info,cpu,isa:")]
    assert len(isa) == 1 and isa[0].endswith("isa:Intel AVX2"), isa
    primitives = _primitives(output)
    convolutions = {impl for kind, impl in primitives if kind == "convolution"}
    assert convolutions and any(impl.endswith(":avx2") for impl in convolutions), convolutions
    # No primitive of any kind (convolution, matmul, batch norm, pooling, reorder, ...) took an AVX-512 kernel.
    assert not [impl for _, impl in primitives if "avx512" in impl], sorted({i for _, i in primitives})
