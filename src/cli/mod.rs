//! The command-line client: subcommands, the `titan>` REPL and rendering.
