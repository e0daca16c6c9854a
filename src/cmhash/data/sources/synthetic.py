"""Source `synthetic`: placeholder until implemented (registers nothing yet)."""
