"""Training and evaluation commands (one module per ``rstg-fast`` subcommand)."""
