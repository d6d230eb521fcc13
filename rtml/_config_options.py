"""Command-line options derived from the fields of a settings dataclass.

A field whose metadata has a ``help`` is the option ``--<flag>`` of a command
(:func:`add_config_options`), and :func:`config_options` reads the parsed values back as
keyword arguments of the dataclass, so a setting is named, defaulted and documented once:
where the dataclass declares it (:class:`rtml.model.ModelConfig`,
:class:`rtml.train.TrainConfig`). The metadata keys:

============  ================================================================================
``help``      the option's help text (argparse expands ``%(default)s``); required
``flag``      the option's name when not the field's (``_`` is written ``-``)
``choices``   the values allowed
``nargs``     the option takes several words (argparse ``nargs``), read back as a tuple
``type``      the type of the option's value, when the default (None) does not tell it
``parse``     the option takes one text ``a,b,c``: its default is the field's values joined
              by commas, and ``parse(text)`` gives the field's value (raising
              :class:`rtml.InputError` on bad text, so the error is one line)
============  ================================================================================

A boolean field is a ``--<flag>``/``--no-<flag>`` pair; any other option takes one value of
the type of the field's default. Torch-free, so that
``rtml train --help`` stays light.
"""

from __future__ import annotations

from argparse import BooleanOptionalAction
from dataclasses import Field, fields

__all__ = ["option_fields", "add_config_options", "config_options"]


def option_fields(config_class) -> list[Field]:
    """The fields of the dataclass ``config_class`` that are command-line options, in field
    order."""
    return [f for f in fields(config_class) if "help" in f.metadata]


def _dest(f: Field) -> str:
    """The attribute of the parsed arguments holding the option of field ``f``."""
    return f.metadata.get("flag", f.name)


def add_config_options(parser, config_class) -> None:
    """Add ``--<flag>`` to the :class:`argparse.ArgumentParser` ``parser`` for every option
    field of ``config_class`` (:func:`option_fields`), with the field's default and the
    metadata's help, choices, nargs or parse (see the module docstring)."""
    for f in option_fields(config_class):
        meta = f.metadata
        kwargs = {"default": f.default, "choices": meta.get("choices"), "help": meta["help"]}
        if "nargs" in meta:
            kwargs["nargs"] = meta["nargs"]
        elif "parse" in meta:
            kwargs["default"] = ",".join(str(v) for v in f.default)
        elif isinstance(f.default, bool):  # type=bool would read "False" as True
            kwargs["action"] = BooleanOptionalAction
        else:
            kwargs["type"] = meta.get("type", type(f.default))
        parser.add_argument(f"--{_dest(f).replace('_', '-')}", **kwargs)


def config_options(args, config_class) -> dict:
    """``{field name: value}`` of the options :func:`add_config_options` added, from the
    parsed ``args``, in field order: keyword arguments of ``config_class``.

    Raises:
        InputError: a ``parse`` field's text is malformed.
    """
    values = {}
    for f in option_fields(config_class):
        value = getattr(args, _dest(f))
        if "parse" in f.metadata:
            value = f.metadata["parse"](value)
        elif isinstance(value, list):
            value = tuple(value)
        values[f.name] = value
    return values
