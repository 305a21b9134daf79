from sb3_po.grpo import GRPO
from sb3_po.kl_ppo import KLPPO
from sb3_po.npg import NPG
from sb3_po.version import __version__
from sb3_po.vpg import VPG

__all__ = ["GRPO", "KLPPO", "NPG", "VPG", "__version__"]
