"""Train one sb3-po algorithm on CartPole-v1, write TensorBoard logs to runs/ and print the evaluation score."""

import argparse

import torch as th
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy

import sb3_po

ALGOS = {"vpg": "VPG", "kl_ppo": "KLPPO", "grpo": "GRPO", "npg": "NPG"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("algo", nargs="?", default="vpg", choices=[a for a, cls in ALGOS.items() if hasattr(sb3_po, cls)])
    parser.add_argument("timesteps", nargs="?", type=int, default=100_000)
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tensorboard-log", default="runs")
    parser.add_argument(
        "--num-threads", type=int, default=1, help="torch threads (default 1: the fastest here, docs/guide/performance.md)"
    )
    args = parser.parse_args()

    th.set_num_threads(args.num_threads)
    algo_class = getattr(sb3_po, ALGOS[args.algo])
    model = algo_class("MlpPolicy", args.env, seed=args.seed, device="cpu", tensorboard_log=args.tensorboard_log)
    model.learn(args.timesteps, tb_log_name=f"{args.algo}_{args.env}")
    eval_env = make_vec_env(args.env, n_envs=1, seed=10_000 + args.seed)
    mean, std = evaluate_policy(model, eval_env, n_eval_episodes=20, deterministic=True)
    print(
        f"{algo_class.__name__} on {args.env} after {model.num_timesteps} env steps: "
        f"evaluation {mean:.1f} +- {std:.1f} (20 episodes)"
    )
    print(f"TensorBoard logs: {model.logger.dir}  (tensorboard --logdir {args.tensorboard_log})")


if __name__ == "__main__":
    main()
