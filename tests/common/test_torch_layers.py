"""MinAtarCNN (sb3_po/common/torch_layers.py): the MinAtar paper's network, for SB3's PPO and GRPO alike."""

import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3 import PPO

from sb3_po import GRPO
from sb3_po.common.env_state import register_minatar
from sb3_po.common.torch_layers import MinAtarCNN


def test_minatar_cnn_is_the_papers_network():
    space = spaces.Box(0, 1, (10, 10, 4), dtype=bool)
    net = MinAtarCNN(space)
    conv, linear = net.cnn[0], net.linear[0]
    assert (conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride) == (4, 16, (3, 3), (1, 1))
    assert (linear.in_features, linear.out_features) == (16 * 8 * 8, 128)
    # channels last in, as MinAtar gives them: the convolution sees channel c of every cell
    obs = th.zeros(2, 10, 10, 4, dtype=th.bool)
    obs[1, :, :, 2] = True
    features = net(obs)
    assert features.shape == (2, 128) and not th.equal(features[0], features[1])
    with pytest.raises(ValueError, match="height, width, channels"):
        MinAtarCNN(spaces.Box(0, 1, (10, 10)))


def test_ppo_and_grpo_train_with_it_on_minatar():
    register_minatar()
    kwargs = dict(policy_kwargs=dict(features_extractor_class=MinAtarCNN), seed=0, device="cpu")
    ppo = PPO("MlpPolicy", "MinAtar/Breakout-v1", n_steps=64, batch_size=32, n_epochs=1, **kwargs)
    grpo = GRPO("MlpPolicy", "MinAtar/Breakout-v1", group_size=2, n_groups=2, n_epochs=1, **kwargs)
    for model in (ppo, grpo):
        before = [p.detach().clone() for p in model.policy.features_extractor.parameters()]
        model.learn(128)
        after = list(model.policy.features_extractor.parameters())
        assert any(not th.equal(b, a) for b, a in zip(before, after, strict=True))  # the CNN itself is trained
    assert isinstance(ppo.policy.features_extractor, MinAtarCNN) and isinstance(grpo.policy.features_extractor, MinAtarCNN)
    assert np.isfinite(grpo.logger.name_to_value["train/loss"])
