"""Import TensorFlow without the C++ start-up chatter (CUDA probing on a CPU-only host).

TensorFlow's GPU-capable wheel logs from C++ before Python can configure logging, so the only
way to keep a command's output readable is to point file descriptor 2 elsewhere while the
library loads. Errors after import are reported normally.
"""

from __future__ import annotations

import os
import sys


def import_tensorflow():
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            import tensorflow as tf
            import keras  # noqa: F401  (loads with TF; its import logs too)
            tf.constant(0)  # the CUDA probe happens at first use
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    return tf
