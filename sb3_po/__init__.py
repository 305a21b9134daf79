from sb3_po.version import __version__

__all__ = ["__version__"]
