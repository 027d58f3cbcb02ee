"""Importing the models, losses and training metrics on the JAX backend does not import
TensorFlow (a fresh interpreter: the backend is fixed at import time). Each model family's
own tests run it under JAX (``seglab.testing.models.check_under_jax``)."""

import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("jax")


def run_under_jax(code: str) -> str:
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def test_importing_models_losses_metrics_does_not_import_tensorflow():
    out = run_under_jax(
        """
        import sys
        import keras
        import seglab.models, seglab.losses, seglab.metrics
        assert keras.backend.backend() == "jax"
        loaded = sorted(m for m in sys.modules if m == "tensorflow" or m.startswith("tensorflow."))
        print("TF_MODULES", len(loaded), loaded[:5])
        """
    )
    assert "TF_MODULES 0 []" in out
