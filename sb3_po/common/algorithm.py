"""What every sb3-po algorithm adds to SB3's ``BaseAlgorithm``: checked training input and checked loading."""

import base64
import io
import json
import pathlib
import pickletools
import zipfile
from typing import Any, ClassVar

from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.type_aliases import MaybeCallback

from sb3_po.common.checks import FiniteCheckCallback


def saved_algorithm(path: str | pathlib.Path | io.BufferedIOBase) -> tuple[str | None, str | None]:
    """
    ``(sb3-po algorithm, policy class name)`` recorded in a file saved by ``model.save`` (None where absent), read
    from its ``data`` member without loading any parameters.

    :raises ValueError: when the file is not a readable SB3 zip
    """
    name = getattr(path, "name", path)
    position = path.tell() if hasattr(path, "tell") else None
    if isinstance(path, (str, pathlib.Path)) and not str(path).endswith(".zip") and not pathlib.Path(path).exists():
        path = f"{path}.zip"  # as SB3's load does
    try:
        with zipfile.ZipFile(path) as archive:
            data = json.loads(archive.read("data"))
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError, UnicodeDecodeError, EOFError) as error:
        raise ValueError(f"{name} is not a model saved by SB3 / sb3-po, or it is truncated or corrupted: {error!r}") from None
    finally:
        if position is not None:
            path.seek(position)  # type: ignore[union-attr]
    return data.get("_sb3_po_algorithm"), _policy_class_name(data.get("policy_class"))


def _policy_class_name(policy: Any) -> str | None:
    """
    The dotted name of the policy class SB3 serialised (``{":type:": "<class 'abc.ABCMeta'>", ":serialized:": ...}``,
    whose ``:type:`` is the metaclass), read from the pickle's opcodes: nothing is unpickled or imported.
    """
    if not isinstance(policy, dict):
        return None
    strings: list[str] = []
    try:
        for opcode, arg, _ in pickletools.genops(base64.b64decode(policy.get(":serialized:", ""))):
            if opcode.name == "GLOBAL":  # protocol < 4: "module name"
                strings += str(arg).split(" ", 1)
            elif isinstance(arg, str):
                strings.append(arg)
            if len(strings) >= 5:
                break
    except (ValueError, TypeError):  # not base64, or not a pickle
        return None
    if strings[:2] == ["cloudpickle.cloudpickle", "_make_skeleton_class"] and len(strings) >= 5:
        # a class cloudpickle saved by value (not importable, e.g. defined in a function or in __main__):
        # _make_skeleton_class(metaclass module, metaclass name, class name, ...)
        return f"{policy.get('__module__', '?')}.{strings[4]}"
    return f"{strings[0]}.{strings[1]}" if len(strings) >= 2 else None


class SB3POAlgorithmMixin:
    """
    Mixed into VPG, KLPPO and GRPO, ahead of their SB3 base class:

    - ``learn()`` without ``total_timesteps`` trains for the ``n_timesteps`` of the shipped RL Zoo entry of the
      algorithm for the env's id (``sb3_po/zoo_configs/<algo>.yml``; its other hyperparameters are not applied), and
      without such an entry says to pass ``total_timesteps``;
    - every ``learn`` runs :class:`FiniteCheckCallback` before the user's callbacks (NaN/inf from the env stop
      training at the step that produced them), and a SubprocVecEnv worker that died turns into a clear error;
    - ``save`` records the algorithm's name; ``load`` refuses a file saved by another algorithm, and turns a
      truncated or corrupted file into a ``ValueError`` naming it, instead of a half-loaded model.

    Each algorithm names itself by ``zoo_name``, its RL Zoo name (its shipped YAML is ``<zoo_name>.yml``).
    """

    zoo_name: ClassVar[str | None] = None

    def _init_callback(self, callback: MaybeCallback, progress_bar: bool = False) -> BaseCallback:
        initialized: BaseCallback = super()._init_callback(callback, progress_bar)  # type: ignore[misc]
        checked = CallbackList([FiniteCheckCallback(), initialized])
        checked.init_callback(self)  # type: ignore[arg-type]
        return checked

    def learn(self, total_timesteps: int | None = None, *args: Any, **kwargs: Any) -> Any:
        if total_timesteps is None:
            total_timesteps = self._default_total_timesteps()
        try:
            return super().learn(total_timesteps, *args, **kwargs)  # type: ignore[misc]
        except (EOFError, BrokenPipeError, ConnectionResetError) as error:
            # SubprocVecEnv: a worker whose env raised dies after printing the env's traceback to stderr, and the
            # main process only sees the closed pipe
            raise RuntimeError(
                f"{type(self).__name__}: an environment worker process stopped while training ({type(error).__name__}): "
                "most likely its env raised an exception, whose traceback the worker printed above. The model is "
                "intact (save() and predict() work); fix the env and build a new VecEnv to continue (model.set_env)."
            ) from error

    def _default_total_timesteps(self) -> int:
        """``n_timesteps`` of the shipped RL Zoo entry (``sb3_po/zoo_configs/<algo>.yml``) for the env's id."""
        from sb3_po.common.zoo_entries import config_path, default_timesteps, zoo_entries

        name = type(self).__name__
        env = getattr(self, "env", None)
        try:
            spec = env.get_attr("spec", indices=[0])[0] if env is not None else None
        except AttributeError:
            spec = None
        env_id = getattr(spec, "id", None)
        algo = type(self).zoo_name
        budget = default_timesteps(algo, env_id) if algo is not None else None
        if budget is None:
            known = ", ".join(zoo_entries(algo)) if algo is not None else ""
            raise ValueError(
                f"{name}.learn() needs total_timesteps, the number of env steps to train for, e.g. "
                f"model.learn(total_timesteps=100_000): the default comes from the shipped RL Zoo entry for the env, "
                f"and {config_path(algo or '?').name} has none for {env_id or 'an env without an id'}"
                + (f" (it has: {known})." if known else ".")
            )
        if getattr(self, "verbose", 0) >= 1:
            print(
                f"{name}.learn(): total_timesteps={budget:,}, "
                f"the n_timesteps of {config_path(str(algo)).name}'s {env_id} entry"
            )
        return budget

    def save(self, *args: Any, **kwargs: Any) -> None:
        self._sb3_po_algorithm = type(self).__name__  # saved with the model's data, checked by load()
        super().save(*args, **kwargs)  # type: ignore[misc]

    @classmethod
    def load(cls, path: Any, *args: Any, **kwargs: Any) -> Any:
        name = getattr(path, "name", path)
        algorithm, policy = saved_algorithm(path)
        accepted = {c.__name__ for c in cls.__mro__}
        if algorithm not in accepted:
            saved_by = f"{algorithm}" if algorithm else f"another library's algorithm (policy {policy})"
            raise ValueError(
                f"{name} was saved by {saved_by}, not by {cls.__name__}: load it with the class that saved it. "
                f"To start {cls.__name__} from its weights, build a new {cls.__name__} and copy the matching "
                "parameters with model.set_parameters(...)."
            )
        try:
            return super().load(path, *args, **kwargs)  # type: ignore[misc]
        except (AssertionError, zipfile.BadZipFile, json.JSONDecodeError, EOFError, RuntimeError) as error:
            raise ValueError(f"{name} is truncated or corrupted: {error!r}. Nothing was loaded.") from error
