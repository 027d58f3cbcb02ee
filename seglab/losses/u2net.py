"""Deep-supervision losses for models with several outputs (U²-Net: the fused map and six sides).

Keras 3 does not broadcast one target over several outputs, so deep supervision is stated
explicitly: one loss per output, a weight per output, and a dataset that repeats the target
(``make_dataset(..., num_outputs=7)``). The total is ``sum_i weights[i] * loss(y, outputs[i])``.

    model.compile(optimizer="adam", **u2net_loss("salient"))

Per-pixel sample weights (``make_dataset(..., class_weights=...)``) need no special loss: Keras'
``SparseCategoricalCrossentropy`` already multiplies them in pixel by pixel, and its
``ignore_class`` leaves the pixels of a dataset's ``ignore_label`` out of the mean (see
``seglab/losses/crossentropy_test.py``).
"""

import numbers

import keras

U2NET_NUM_OUTPUTS = 7
# seglab.data's default ignore_label (PaddleSeg's ignore_index), restated so that the losses
# stay independent of the data package.
DEFAULT_IGNORE_LABEL = 255


def deep_supervision_loss(base_loss, num_outputs, weights=None):
    """Return the ``loss`` and ``loss_weights`` arguments of ``model.compile`` for deep supervision.

    Args:
        base_loss: a loss for one output (a ``keras.losses.Loss``, a function or a name).
        num_outputs: how many outputs the model has (7 for U²-Net).
        weights: one weight per output, in the model's output order; ``None`` means all 1
            (PaddleSeg's ``MULTI_LOSS_WEIGHT`` / ``coef``).

    Returns:
        ``{"loss": [base_loss] * num_outputs, "loss_weights": [...]}``, to unpack into
        ``model.compile(**...)``.
    """
    if not isinstance(num_outputs, int) or num_outputs < 1:
        raise ValueError(f"num_outputs must be a positive integer, got {num_outputs!r}")
    if weights is None:
        weights = [1.0] * num_outputs
    weights = list(weights)
    if len(weights) != num_outputs:
        raise ValueError(
            f"got {len(weights)} loss weights for {num_outputs} outputs; give one weight per "
            f"output (fused map first, then the side maps)"
        )
    for weight in weights:
        if not isinstance(weight, numbers.Real) or weight < 0:
            raise ValueError(f"loss weights must be non-negative numbers, got {weights!r}")
    return {"loss": [base_loss] * num_outputs, "loss_weights": [float(w) for w in weights]}


def u2net_loss(head="salient", weights=None, ignore_label=DEFAULT_IGNORE_LABEL):
    """The U²-Net training loss for the model's ``head``, as ``model.compile`` arguments.

    - ``"salient"``: binary cross-entropy on the probabilities of the fused map and the six
      side maps, summed (the paper's loss).
    - ``"multiclass"``: sparse categorical cross-entropy from logits on all seven outputs,
      summed with ``weights`` (the PaddleSeg adaptation); targets are class ids
      ``(B, H, W, 1)``; per-pixel class weights come in as the dataset's sample weights.
      Pixels labelled ``ignore_label`` count in no output's loss, which is the mean over the
      other pixels.

    Args:
        head: ``"salient"`` or ``"multiclass"``, as given to ``u2net``/``u2netp``.
        weights: seven weights (fused map first); ``None`` means all 1.
        ignore_label: the target value of pixels to leave out (the dataset's
            ``ignore_label``, 255 by default as in PaddleSeg); ``None`` for none. Only the
            multi-class head has one: saliency masks have no ignored pixels.
    """
    if head == "salient":
        base_loss = keras.losses.BinaryCrossentropy()
    elif head == "multiclass":
        base_loss = keras.losses.SparseCategoricalCrossentropy(
            from_logits=True, ignore_class=ignore_label
        )
    else:
        raise ValueError(f"head must be 'salient' or 'multiclass', got {head!r}")
    return deep_supervision_loss(base_loss, U2NET_NUM_OUTPUTS, weights)
