"""Networks that remember the arguments they were built with, so a weights folder can rebuild them."""

import inspect
from typing import Any


def jsonable(value: Any) -> Any:
    """`value` with tuples turned into lists, at any depth (what JSON gives back)."""
    if isinstance(value, (list, tuple)):
        return [jsonable(item) for item in value]
    if isinstance(value, dict):
        return {key: jsonable(item) for key, item in value.items()}
    return value


class RecordsArguments:
    """A base class whose instances keep their constructor's arguments, defaults filled in, as the dict
    `init_args`: `type(model)(**model.init_args)` builds the same architecture. For constructors with
    named arguments only (no *args or **kwargs).

    They are taken in `__new__`, before `__init__` runs, so `__init__` keeps its own signature (which the
    `gspn` command's parser reads) and may reassign its arguments freely.
    """

    init_args: dict[str, Any]

    def __new__(cls, *args, **kwargs):
        instance = super().__new__(cls)
        # bind_partial: copy.deepcopy calls __new__ without arguments (the state is restored afterwards).
        bound = inspect.signature(cls.__init__).bind_partial(instance, *args, **kwargs)
        bound.apply_defaults()
        instance.__dict__["init_args"] = jsonable(dict(list(bound.arguments.items())[1:]))
        return instance
