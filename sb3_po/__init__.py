from sb3_po.version import __version__
from sb3_po.vpg import VPG

__all__ = ["VPG", "__version__"]
