from sb3_po.kl_ppo.kl_ppo import KLPPO
from sb3_po.kl_ppo.policies import CnnPolicy, MlpPolicy, MultiInputPolicy

__all__ = ["KLPPO", "CnnPolicy", "MlpPolicy", "MultiInputPolicy"]
