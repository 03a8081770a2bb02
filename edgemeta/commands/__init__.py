"""CLI subcommands, one module per family, imported lazily by edgemeta.cli."""
