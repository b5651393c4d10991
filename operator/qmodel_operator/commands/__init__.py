"""Subcommands of the `qmodel` CLI, one module each."""
