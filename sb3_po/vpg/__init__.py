from sb3_po.vpg.policies import CnnPolicy, MlpPolicy, MultiInputPolicy
from sb3_po.vpg.vpg import VPG

__all__ = ["VPG", "CnnPolicy", "MlpPolicy", "MultiInputPolicy"]
