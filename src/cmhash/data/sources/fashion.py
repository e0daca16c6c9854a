"""Source `fashion`: placeholder until implemented (registers nothing yet)."""
