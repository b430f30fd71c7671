"""streamvxl: a streaming video memory for real-time agents."""
