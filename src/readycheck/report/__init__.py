"""One module per output, each a function of a RunResult: console, json, junit, markdown."""
