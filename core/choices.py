"""Choice fields of the config dataclasses: a `typing.Literal[...]` annotation is the one list of values.

Every setting with a fixed set of values (mel scaling, monitor, strategy, loss, optimizer, the
augmentation modes, ...) is annotated `Literal[...]`. The same annotation gives the generated
command-line flag its argparse `choices` (trainer.recipe.config.add_config_flags) and is checked here,
once, by each config dataclass's __post_init__; no field lists its values a second time.

    from core import choices

    @dataclasses.dataclass(frozen=True)
    class Settings:
        mode: Literal["fast", "exact"] = "fast"

        def __post_init__(self) -> None:
            choices.check(self, ValueError)   # ValueError("mode='slow' is not one of ['fast', 'exact']")

    choices.of(Literal["fast", "exact"])      # ("fast", "exact"); None for a type that is not a Literal
"""
from __future__ import annotations

import dataclasses
import functools
import typing
from typing import Any, Literal


def of(tp: Any) -> tuple[Any, ...] | None:
    """The values of a `Literal[...]` type, None for any other type."""
    return typing.get_args(tp) if typing.get_origin(tp) is Literal else None


@functools.lru_cache(maxsize=None)
def fields(cls: type) -> dict[str, tuple[Any, ...]]:
    """{field name: its values} of the Literal-typed fields of dataclass `cls` (resolved annotations)."""
    hints = typing.get_type_hints(cls)
    return {f.name: values for f in dataclasses.fields(cls) if (values := of(hints[f.name])) is not None}


def is_one_of(value: Any, values: tuple[Any, ...]) -> bool:
    """`value in values` with the type matched too (True is not the choice 1)."""
    return any(value == v and type(value) is type(v) for v in values)


def check(obj: Any, error: type[Exception]) -> None:
    """Raises `error` naming the first Literal-typed field of dataclass `obj` whose value is not a choice."""
    for name, values in fields(type(obj)).items():
        value = getattr(obj, name)
        if not is_one_of(value, values):
            raise error(f"{name}={value!r} is not one of {list(values)}")
