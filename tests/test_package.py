import importlib

import sb3_po


def test_version_and_exports():
    assert isinstance(sb3_po.__version__, str) and sb3_po.__version__.count(".") == 2
    from sb3_po import VPG  # noqa: F401

    for algo in ("vpg",):
        module = importlib.import_module(f"sb3_po.{algo}")
        for name in ("MlpPolicy", "CnnPolicy", "MultiInputPolicy"):
            assert hasattr(module, name)
