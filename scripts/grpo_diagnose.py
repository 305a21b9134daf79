"""
What GRPO's group advantages look like on an env, before tuning it (issue 32: why GRPO lags on HalfCheetah).

Trains GRPO with its shipped entry (or a variant of ``scripts/variants.yml``) and, at chosen rollouts, reads each
group's member episodes from the rollout buffer and measures, step by step along the episode:

- ``running``: the fraction of the group's members still running at step t (the per-step baseline's sample size);
- ``state spread``: the mean distance between two members' observations at step t, over the square root of the
  observation's size (the observations as the policy sees them, normalised where the entry normalises). Every member
  starts from the same state; a spread that grows means the per-step baseline at step t averages over members in
  different states, so it is no longer a baseline for the state a member is in;
- ``G spread``: the std over the members of the discounted reward-to-go G_t (the advantage's scale before scaling);
- ``local share``: the correlation, over members and steps, between a member's advantage at t and the part of it
  earned in the next ``--local`` steps (its rewards there minus the group's mean, discounted). Near 1: an advantage
  reflects what the action did; near 0: it is mostly the rest of the episode's noise, which the group of
  ``group_size`` members must average out;
- the split-half agreement of the policy gradient: the cosine between the surrogate's gradient from half of the
  members and from the other half (each half with the whole group's baseline). Near 0: the update is mostly noise.

    python scripts/grpo_diagnose.py HalfCheetah-v5 --rollouts 1 10 40 120 \\
        --json benchmark_results/diagnostics/grpo_HalfCheetah-v5.json
"""

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch as th
from stable_baselines3.common.callbacks import BaseCallback

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import benchmark  # noqa: E402  (scripts/benchmark.py: the entries, variants and the model as the benchmark builds it)

from sb3_po.grpo.advantages import discounted_reward_to_go  # noqa: E402
from sb3_po.registry import build_model  # noqa: E402

CHECKPOINTS = (0, 9, 99, 249, 499, 749, 999)


def group_arrays(model: Any, group: list[Any]) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """Each member's rewards, observations and rows of the rollout buffer (in the buffer's storage)."""
    storage = model.rollout_buffer.storage
    rewards, observations, rows = [], [], []
    for episode in group:
        index = np.arange(episode.start, episode.stop)
        rewards.append(storage.rewards(episode))
        observations.append(np.asarray(storage.arrays["observations"][index, episode.slot], dtype=np.float64))
        rows.append(index)
    return rewards, observations, rows


def diagnose_group(rewards: list[np.ndarray], observations: list[np.ndarray], gamma: float, local: int) -> dict[str, Any]:
    """The per-step measurements of one group (see the module's docstring)."""
    horizon = max(len(r) for r in rewards)
    n = len(rewards)
    rtg = np.full((n, horizon), np.nan)
    rew = np.full((n, horizon), np.nan)
    obs = np.full((n, horizon, observations[0].reshape(len(observations[0]), -1).shape[1]), np.nan)
    for i, (r, o) in enumerate(zip(rewards, observations, strict=True)):
        rtg[i, : len(r)] = discounted_reward_to_go(r, gamma)
        rew[i, : len(r)] = r
        obs[i, : len(r)] = o.reshape(len(o), -1)
    running = np.mean(~np.isnan(rtg), axis=0)
    advantage = rtg - np.nanmean(rtg, axis=0)  # step_mean's advantage (the member included), before scaling
    # the part earned in the next `local` steps: the rewards' deviation from the group's mean reward at that step
    deviation = rew - np.nanmean(rew, axis=0)
    discounts = gamma ** np.arange(local)
    earned = np.full_like(rtg, np.nan)
    for t in range(horizon):
        window = deviation[:, t : t + local]
        earned[:, t] = np.nansum(window * discounts[: window.shape[1]], axis=1)
    both = ~np.isnan(advantage) & ~np.isnan(earned) & (running[None, :] > 1 / n)
    # no local part where every member earns the same reward at every step (CartPole's 1s): nan, not a correlation
    local_share = float("nan")
    if both.sum() > 2 and np.std(earned[both]) > 0 and np.std(advantage[both]) > 0:
        local_share = float(np.corrcoef(advantage[both], earned[both])[0, 1])
    spread = []
    for t in range(horizon):
        here = obs[~np.isnan(rtg[:, t]), t]
        if len(here) < 2:
            spread.append(float("nan"))
            continue
        distances = np.linalg.norm(here[:, None, :] - here[None, :, :], axis=-1)
        spread.append(float(distances[np.triu_indices(len(here), 1)].mean() / np.sqrt(here.shape[1])))
    return dict(
        members=n,
        horizon=horizon,
        running=running.tolist(),
        state_spread=spread,
        g_spread=np.nanstd(rtg, axis=0).tolist(),
        local_share=local_share,
    )


def split_half_cosine(model: Any, groups: list[list[Any]], rng: np.random.Generator) -> float:
    """
    Cosine between the surrogate's gradients (ratio 1: the policy gradient) from two halves of every group's members,
    with the advantages the buffer computed (the whole group's baseline).
    """
    buffer = model.rollout_buffer
    samples = buffer.all_samples()
    offsets = np.cumsum([0] + [ep.length for group in groups for ep in group])
    halves: list[list[np.ndarray]] = [[], []]
    k = 0
    for group in groups:
        order = rng.permutation(len(group))
        for position, member in enumerate(order):
            start = offsets[k + member]
            halves[position % 2].append(np.arange(start, start + group[member].length))
        k += len(group)
    gradients = []
    for half in halves:
        index = th.as_tensor(np.concatenate(half), device=model.device)
        model.policy.zero_grad()
        _, log_prob, _ = model.policy.evaluate_actions(samples.observations[index], samples.actions[index])
        (-(log_prob * samples.advantages[index]).mean()).backward()
        gradients.append(th.cat([p.grad.flatten() for p in model.policy.parameters() if p.grad is not None]).clone())
    model.policy.zero_grad()
    return float(th.nn.functional.cosine_similarity(gradients[0], gradients[1], dim=0))


class Diagnose(BaseCallback):
    """At the end of the chosen rollouts (counted from 1), measures the groups the update is about to train on."""

    def __init__(self, rollouts: list[int], local: int):
        super().__init__()
        self.rollouts, self.local, self.count = set(rollouts), local, 0
        self.results: list[dict[str, Any]] = []
        self.rng = np.random.default_rng(0)

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        self.count += 1
        if self.count not in self.rollouts:
            return
        buffer = self.model.rollout_buffer  # its advantages are computed (the collector does it before this call)
        groups = [group for group in buffer.groups if group and group[0].credit is None]
        measured = [diagnose_group(*group_arrays(self.model, g)[:2], self.model.gamma, self.local) for g in groups]
        self.results.append(
            dict(
                rollout=self.count,
                env_steps=int(self.model.num_timesteps),
                groups=len(groups),
                mean_return=float(np.mean([r.sum() for g in groups for r in group_arrays(self.model, g)[0]])),
                split_half_cosine=split_half_cosine(self.model, groups, self.rng),
                per_group=measured,
            )
        )


def table(results: list[dict[str, Any]]) -> str:
    """One row per measured rollout and checkpoint step: the group means of each measurement."""
    lines = [
        "| rollout | env steps | mean return | split-half cosine | local share | step t | running | state spread | G spread |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        groups = r["per_group"]
        shares = [g["local_share"] for g in groups if np.isfinite(g["local_share"])]
        local = float(np.mean(shares)) if shares else float("nan")
        for t in CHECKPOINTS:
            if t >= max(g["horizon"] for g in groups):
                continue

            def at(key: str, t: int = t, groups: list[dict[str, Any]] = groups) -> float:
                values = [g[key][t] for g in groups if t < g["horizon"] and np.isfinite(g[key][t])]
                return float(np.mean(values)) if values else float("nan")

            lines.append(
                f"| {r['rollout']} | {r['env_steps']:,} | {r['mean_return']:.1f} | {r['split_half_cosine']:.3f} "
                f"| {local:.3f} | {t} | {at('running'):.2f} | {at('state_spread'):.3f} | {at('g_spread'):.2f} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("env", help="an env of scripts/benchmark.py")
    parser.add_argument("--algo", default="grpo", help="grpo or a variant grpo@<name> of scripts/variants.yml")
    parser.add_argument("--rollouts", type=int, nargs="+", default=[1, 10, 40], help="rollouts to measure (from 1)")
    parser.add_argument("--local", type=int, default=10, help="steps of the advantage's local part")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    th.set_num_threads(1)
    hyperparams = benchmark.load_hyperparams(args.algo, args.env)
    model = build_model("grpo", args.env, args.seed, hyperparams)
    callback = Diagnose(args.rollouts, args.local)
    start = time.perf_counter()
    model.learn(10**9, callback=[callback, _StopAfter(max(args.rollouts))])
    print(table(callback.results))
    record = dict(
        env=args.env,
        algo=args.algo,
        seed=args.seed,
        local=args.local,
        hyperparams={k: str(v) for k, v in hyperparams.items()},
        seconds=time.perf_counter() - start,
        versions=benchmark.run_versions(),
        results=callback.results,
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(record))


class _StopAfter(BaseCallback):
    """Stops learn() once ``n`` rollouts have been collected and trained on."""

    def __init__(self, n: int):
        super().__init__()
        self.n, self.count = n, 0

    def _on_rollout_start(self) -> None:
        self.count += 1

    def _on_step(self) -> bool:
        return self.count <= self.n


if __name__ == "__main__":
    main()
