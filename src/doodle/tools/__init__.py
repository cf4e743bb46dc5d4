"""The tools/*.py commands as package modules: each has `main(argv)` and `console()` (its console script)."""
