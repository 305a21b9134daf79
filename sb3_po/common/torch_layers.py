"""Features extractors for observation spaces SB3's own do not fit."""

import gymnasium as gym
import torch as th
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn


class MinAtarCNN(BaseFeaturesExtractor):
    """
    The network of the MinAtar paper (Young and Tian 2019, arXiv 1903.03176, section 4): one convolution of 16 3 x 3
    filters, stride 1, then a fully connected layer of ``features_dim`` (128) units, ReLU after each. MinAtar's
    observations are small (10 x 10 x channels, booleans, channels last), below the 36 x 36 that SB3's ``NatureCNN``
    needs; pass it as ``policy_kwargs=dict(features_extractor_class=MinAtarCNN)`` with ``"MlpPolicy"`` (the
    observations are not uint8 images, so SB3 neither normalises nor transposes them: this extractor does).

    :param observation_space: A ``Box`` of shape (height, width, channels)
    :param features_dim: Units of the fully connected layer
    """

    def __init__(self, observation_space: gym.spaces.Box, features_dim: int = 128):
        super().__init__(observation_space, features_dim)
        if len(observation_space.shape) != 3:
            raise ValueError(f"MinAtarCNN expects (height, width, channels) observations, got {observation_space}")
        height, width, channels = observation_space.shape
        self.cnn = nn.Sequential(nn.Conv2d(channels, 16, kernel_size=3, stride=1), nn.ReLU(), nn.Flatten())
        self.linear = nn.Sequential(nn.Linear(16 * (height - 2) * (width - 2), features_dim), nn.ReLU())

    def forward(self, observations: th.Tensor) -> th.Tensor:
        return self.linear(self.cnn(observations.float().permute(0, 3, 1, 2)))
