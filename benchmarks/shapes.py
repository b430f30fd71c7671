"""Model shapes for benchmarks: they live in the package (`streamvxl.model.shapes`), where the
training recipe's scaling runs use them too."""

from streamvxl.model.shapes import model_shape, random_model, videoxl_7b

__all__ = ["model_shape", "random_model", "videoxl_7b"]
