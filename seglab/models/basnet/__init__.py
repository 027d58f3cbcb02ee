"""BASNet (predict-and-refine salient object segmentation)."""

from seglab.models.basnet.basnet import OUTPUT_NAMES, basnet

__all__ = ["OUTPUT_NAMES", "basnet"]
