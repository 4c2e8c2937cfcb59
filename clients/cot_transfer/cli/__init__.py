"""The `cot-transfer` command line."""
