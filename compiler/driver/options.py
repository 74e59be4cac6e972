"""How a compile option is given: the metadata on each CompileConfig field.

:func:`option` declares a field together with its help, its CLI flag and the functions
that turn what a user typed (``parse``, CLI text) or passed (``convert``, API value)
into the field's value. mcc.compile, mcc.tune and ``mcc compile`` / ``mcc tune`` read
this one list (mcc.driver.config.OPTIONS), so a new field is a new keyword and a new flag.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import MISSING, dataclass


@dataclass(frozen=True)
class Option:
    help: str
    flag: str = ""  # the CLI flag; default --<name with dashes>; "--a/--no-a" for on/off
    cli_help: str = ""  # the flag's help where it says the opposite of the field (--no-verify)
    metavar: str | None = None
    type: type | None = None  # float / int for the CLI; None: text or on/off
    choices: tuple[str, ...] | None = None
    minimum: float | None = None  # the CLI refuses smaller numbers
    multiple: bool = False  # repeatable flag, collected into a tuple
    show_default: bool = False
    parse: Callable | None = None  # the CLI's text(s) -> the API's value
    convert: Callable | None = None  # the API's value -> the field's (one-line MccErrors)
    kernels: bool = False  # changes which kernels a compile builds: `mcc tune` takes it too
    name: str = ""  # the field's, filled in by options()
    default: object = None  # the field's, filled in by options()

    @property
    def cli_flag(self) -> str:
        return self.flag or "--" + self.name.replace("_", "-")


def option(help: str, default=None, *, factory=MISSING, required=False, hash=None,
           compare=True, **how) -> dataclasses.Field:
    """A CompileConfig field that is also a user-facing option (see :class:`Option`);
    ``required``: no default in the dataclass (the API's None still means the default)."""
    if required or factory is not MISSING:
        default = MISSING
    return dataclasses.field(default=default, default_factory=factory, hash=hash,
                             compare=compare, metadata={"option": Option(help, **how)})


def options(config_class) -> dict[str, Option]:
    """Name -> Option of each field of ``config_class`` (CompileConfig), in field order."""
    found = {}
    for f in dataclasses.fields(config_class):
        default = (f.default if f.default is not MISSING
                   else f.default_factory() if f.default_factory is not MISSING else None)
        found[f.name] = dataclasses.replace(f.metadata["option"], name=f.name, default=default)
    return found


def describe(config_class) -> str:
    """One line per option (keyword, flag: help), for docstrings."""
    return "\n".join(f"``{name}`` ({opt.cli_flag}): {opt.help}"
                     for name, opt in options(config_class).items())
