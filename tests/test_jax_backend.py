"""The models, losses and training metrics run on the JAX backend, and importing them there
does not import TensorFlow. Each check runs in a fresh interpreter (the backend is fixed at
import time)."""

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


@pytest.mark.slow
def test_every_model_runs_a_forward_pass_and_a_training_step_under_jax():
    out = run_under_jax(
        """
        import numpy as np
        import keras
        from seglab import losses, models

        x = np.random.default_rng(0).random((2, 64, 64, 3), dtype=np.float32) * 255.0
        built = {
            "unet": models.unet(num_classes=3, input_shape=(64, 64, 3), encoder_weights=None),
            "deeplabv3plus": models.deeplabv3plus(num_classes=5, input_shape=(64, 64, 3), encoder_weights=None),
            "basnet": models.basnet(num_classes=1, input_shape=(64, 64, 3), filters=8),
            "u2netp": models.u2netp(num_classes=1, input_shape=(64, 64, 3)),
            "u2netp_multiclass": models.u2netp(num_classes=3, input_shape=(64, 64, 3), head="multiclass"),
        }
        for name, model in built.items():
            outputs = model(x, training=False)
            first = outputs[0] if isinstance(outputs, (list, tuple)) else outputs
            assert first.shape[:3] == (2, 64, 64), (name, first.shape)
            print("OK", name, tuple(first.shape))

        # One real training step of a deeply supervised model on this backend.
        model = built["u2netp"]
        y = (x[..., :1] > 0.5).astype("float32")
        model.compile(optimizer="adam", **losses.deep_supervision_loss(keras.losses.BinaryCrossentropy(), 7))
        history = model.fit(x, (y,) * 7, epochs=2, verbose=0)
        assert np.isfinite(history.history["loss"]).all()
        print("TRAINED", history.history["loss"])
        """
    )
    for name in ("unet", "deeplabv3plus", "basnet", "u2netp", "u2netp_multiclass"):
        assert f"OK {name} (2, 64, 64" in out
    assert "TRAINED" in out
