"""Networks: the PixelCNN, the VAE, and the causality check."""
from .causality import check_autoregressive
from .pixelcnn import PixelCNN, PixelCNNConfig

__all__ = ["PixelCNN", "PixelCNNConfig", "check_autoregressive"]
