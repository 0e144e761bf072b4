"""fluxfleet's app code outside the trigger layer; never imports azure.functions."""

__version__ = "0.1.0"
