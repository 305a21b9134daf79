from sb3_po.npg.npg import NPG
from sb3_po.npg.policies import CnnPolicy, MlpPolicy, MultiInputPolicy

__all__ = ["NPG", "CnnPolicy", "MlpPolicy", "MultiInputPolicy"]
