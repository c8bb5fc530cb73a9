"""StyA2K and its baselines in plain PyTorch: `load_method`, `available_methods`, `METHODS`,
`WeightsError`; `model.stylize.stylize` for PIL images.

Names are imported on first use, so that `python -m model.weights` runs its module only once."""
import importlib

_EXPORTS = {"METHODS": "methods", "available_methods": "methods", "load_method": "methods", "WeightsError": "weights"}
__all__ = list(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'model' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
