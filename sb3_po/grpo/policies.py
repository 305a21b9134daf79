# GRPO's policies are SB3's actor-critic policies without the critic: no value network, no value parameters
from sb3_po.common.policies import ActorOnlyCnnPolicy, ActorOnlyMultiInputPolicy, ActorOnlyPolicy

GRPOPolicy = ActorOnlyPolicy
MlpPolicy = ActorOnlyPolicy
CnnPolicy = ActorOnlyCnnPolicy
MultiInputPolicy = ActorOnlyMultiInputPolicy
