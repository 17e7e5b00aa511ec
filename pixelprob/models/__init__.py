"""Networks: the PixelCNN, the VAE, and the causality check."""
from .causality import check_autoregressive
from .pixelcnn import PixelCNN, PixelCNNConfig
from .vae import VAE, VAEConfig

__all__ = ["PixelCNN", "PixelCNNConfig", "VAE", "VAEConfig", "check_autoregressive"]
