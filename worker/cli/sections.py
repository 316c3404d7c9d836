"""The ``sms-worker`` group: commands listed by who uses them, and one error policy for all.

Click lists a group's commands alphabetically under one heading; people look for a command by
what they are doing, so the help lists them in sections. And whatever goes wrong below the
group ends as one line and an exit code: a usage error (a bad option or argument) with 2,
anything unexpected with 1, a traceback only with ``--debug``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import click

from worker.cli.common import (
    BAD_INPUT,
    DEBUG_KEY,
    FAILURE,
    command_error,
    first_line,
)

OTHER_SECTION = "Other commands"


class SectionedGroup(click.Group):
    """A group whose help lists its commands under headings, in the order given.

    ``lazy`` names commands by ``"module:attribute"``: a command's module is imported only when
    that command is asked for, so ``sms-worker --version`` or ``sms-worker optout list`` does not
    pay for importing Celery, the simulator and everything else every other command needs.
    ``prepare`` runs once on each command as it is loaded.
    """

    def __init__(
        self,
        *args: Any,
        sections: Sequence[tuple[str, Sequence[str]]] = (),
        lazy: Mapping[str, str] | None = None,
        prepare: Callable[[click.Command], None] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.sections = tuple((title, tuple(names)) for title, names in sections)
        self.lazy = dict(lazy or {})
        self.prepare = prepare

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy and cmd_name not in self.commands:
            module_name, _, attribute = self.lazy[cmd_name].partition(":")
            command = getattr(importlib.import_module(module_name), attribute)
            if self.prepare is not None:
                self.prepare(command)
            self.add_command(command, cmd_name)
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        visible = {
            name: command
            for name in self.list_commands(ctx)
            if (command := self.get_command(ctx, name)) is not None and not command.hidden
        }
        if not visible:
            return
        placed = {name for _, names in self.sections for name in names}
        sections = [*self.sections, (OTHER_SECTION, tuple(n for n in visible if n not in placed))]
        limit = formatter.width - 6 - max(len(name) for name in visible)
        for title, names in sections:
            rows = [(n, visible[n].get_short_help_str(limit)) for n in names if n in visible]
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as error:
            # The group's own options: --debug may not have been read yet.
            raise _one_line(error, debug="--debug" in args) from error

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.Abort):
            raise
        except click.UsageError as error:
            raise _one_line(error, debug=bool(ctx.meta.get(DEBUG_KEY))) from error
        except click.ClickException:
            raise
        except Exception as error:
            hint = "" if ctx.meta.get(DEBUG_KEY) else " (--debug shows the traceback)"
            message = f"unexpected {type(error).__name__}: {first_line(error)}{hint}"
            raise command_error(message, FAILURE, ctx=ctx) from error


def _one_line(error: click.UsageError, *, debug: bool) -> click.ClickException:
    """A usage error as one line naming what is wrong, and where the help is."""
    if isinstance(error, click.exceptions.NoArgsIsHelpError):
        return error  # a group called bare: its help is the answer
    where = error.ctx
    hint = f" (see: {where.command_path} --help)" if where is not None else ""
    failure = command_error(error.format_message().rstrip(".") + hint, BAD_INPUT, ctx=where)
    failure.debug = debug
    return failure
