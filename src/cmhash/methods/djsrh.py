"""Method `djsrh`: placeholder until implemented (registers nothing yet)."""
