"""Source `folder`: placeholder until implemented (registers nothing yet)."""
