"""Method `cmfh`: placeholder until implemented (registers nothing yet)."""
