"""The `ssljax` command: one module per group of subcommands, `main` joins them."""

from ssljax.cli.main import main, parser

__all__ = ['main', 'parser']
