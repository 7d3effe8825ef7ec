"""`newsletter completion SHELL`: the script that makes the shell complete commands and options.

Click writes the script; this command only names the shell, so that users need not know
click's `_NEWSLETTER_COMPLETE=bash_source` convention. The script asks `newsletter`
itself for each completion, so it stays right when commands or options change.
"""

from __future__ import annotations

import click

from newsletter.cli.base import main

SHELLS = ("bash", "zsh", "fish")
PROG_NAME = "newsletter"
COMPLETE_VAR = "_NEWSLETTER_COMPLETE"


@main.command(short_help="Print the shell completion script for bash, zsh or fish.")
@click.argument("shell", type=click.Choice(SHELLS))
def completion(shell: str) -> None:
    """Print the completion script for SHELL (bash, zsh or fish).

    \b
    bash:  eval "$(newsletter completion bash)"     in ~/.bashrc
    zsh:   eval "$(newsletter completion zsh)"      in ~/.zshrc
    fish:  newsletter completion fish > ~/.config/fish/completions/newsletter.fish
    """
    from click.shell_completion import get_completion_class  # only this command needs it

    complete = get_completion_class(shell)
    if complete is None:  # click always has these three; a future click without one is a setup problem
        raise click.UsageError(f"this version of click cannot complete {shell}")
    click.echo(complete(main, {}, PROG_NAME, COMPLETE_VAR).source())
