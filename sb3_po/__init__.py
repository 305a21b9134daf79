from sb3_po.vpg import VPG
from sb3_po.version import __version__

__all__ = ["VPG", "__version__"]
