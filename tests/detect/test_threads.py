"""Each detection worker process's TensorFlow thread pools: its share of the cores, set before TF starts."""
import os
import subprocess
import sys
import textwrap

import pytest

from detect import model


@pytest.mark.parametrize("processes, asked, cores, expected", [
    (2, 0, 2, 1),    # 2 workers on 2 cores: one thread each, not 2 x 2
    (2, 0, 16, 8),
    (3, 0, 2, 1),    # more workers than cores: never 0 (which would mean "every core")
    (1, 0, 16, 0),   # one process: TensorFlow's default
    (None, 0, 16, 0),  # remote runner, process count unknown: TensorFlow's default
    (2, 5, 2, 5),    # --tf_threads wins
])
def test_threads_per_process(monkeypatch, processes, asked, cores, expected):
    monkeypatch.setattr(os, "cpu_count", lambda: cores)
    assert model.threads_per_process(processes, asked) == expected


def test_limit_threads_before_and_after_tensorflow_starts():
    # A fresh interpreter: the cap holds before the first op and is refused (False) once TF runs.
    code = textwrap.dedent("""
        import tensorflow as tf
        from detect import model
        print(model.limit_threads(0), model.limit_threads(1))
        print(tf.config.threading.get_intra_op_parallelism_threads(),
              tf.config.threading.get_inter_op_parallelism_threads())
        tf.constant(1.0) + 1.0
        print(model.limit_threads(2))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    assert out.stdout.split() == ["False", "True", "1", "1", "False"]
