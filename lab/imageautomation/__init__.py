"""Flux image automation, simulated (image-reflector and image-automation controllers); see service.py."""

from lab.imageautomation.service import ImageAutomationService as SERVICE

__all__ = ["SERVICE"]
