"""pixelprob: ask trained PixelCNNs and VAEs questions about pixels.

    import pixelprob as pp
    model = pp.load("pixelcnn-mnist")
    r = pp.query(model, observe=pp.bottom_half(image), target=pp.middle_pixel, method="gibbs")
    r.probs        # 256 probabilities
"""
from .checkpoint import load, save, shipped
from .query import methods, query
from .regions import (Evidence, Region, bottom_half, everything, first_pixel, from_mask, middle_pixel,
                      nothing, pixel, rect, rows, top_half)
from .result import QueryResult

__version__ = "0.1.0"


def __getattr__(name):
    # plotting pulls in matplotlib: import it only when asked for
    if name in ("plot_trace", "plot_rank", "plot_elbo", "plot_result", "plot_probs", "plot_images"):
        from . import plots
        return getattr(plots, name)
    raise AttributeError(f"module 'pixelprob' has no attribute {name!r}")


__all__ = ["load", "save", "shipped", "query", "methods", "QueryResult", "Region", "Evidence",
           "first_pixel", "middle_pixel", "top_half", "bottom_half", "everything", "nothing",
           "pixel", "rows", "rect", "from_mask"]
