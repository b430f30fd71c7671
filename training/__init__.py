"""Training recipes for the embedded small model: the synthetic world, data and loops.

`training` imports `streamvxl`; nothing in `streamvxl` imports `training`.
"""
