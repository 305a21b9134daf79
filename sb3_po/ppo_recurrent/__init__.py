from sb3_po.ppo_recurrent.ppo_recurrent import RecurrentPPO

__all__ = ["RecurrentPPO"]
