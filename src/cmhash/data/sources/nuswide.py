"""Source `nuswide`: placeholder until implemented (registers nothing yet)."""
