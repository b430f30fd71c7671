"""The Video-XL model: torch and transformers only (no sources, threads or I/O besides weights)."""

from .config import LLMConfig, VideoXLConfig, VisualConfig, VSTConfig
from .videoxl import VideoXL, tiny_config

__all__ = ["LLMConfig", "VSTConfig", "VideoXL", "VideoXLConfig", "VisualConfig", "tiny_config"]
