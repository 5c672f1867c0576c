"""The `account-hierarchy` console script: the CLI, with a setting that cannot be used (an
environment variable such as `AH_PARTITIONS_START`) reported in one line, even when it stops
the CLI's modules from loading."""

import click

from account_hierarchy.settings import SettingError, check_all


def main() -> None:
    """Run the CLI (`account_hierarchy.cli.main`)."""
    try:
        check_all()
        from account_hierarchy.cli import main as cli

        cli()
    except SettingError as error:
        click.echo(f"Error: {error}", err=True)
        raise SystemExit(1) from None
