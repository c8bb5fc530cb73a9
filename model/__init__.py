"""StyA2K and its baselines in plain PyTorch. Entry points: `model.methods` (`load_method`,
`available_methods`, `METHODS`), `model.pipeline.stylize` for PIL images, `model.weights.WeightsError`.
This file imports nothing, so that torch-free modules (`model.images`, `model.files`) stay torch-free."""
