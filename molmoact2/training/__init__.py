"""Training pipelines that combine worlds (the simulator) with models (Nano): runtime layer.

`nano_data` renders expert demos once into a cached dataset (frames, depth codes, carried-forward
depth buffers, spatial QA from scene ground truth, norm stats); `nano_examples` turns the cache into
Nano training examples mixed by style; `nano_trainer` runs the resumable training loop behind
`molmoact2 train nano`. Nothing here is imported by `import molmoact2`.
"""
