"""Subcommands of the `molmoact2` CLI, one module each (see `molmoact2.cli`)."""
