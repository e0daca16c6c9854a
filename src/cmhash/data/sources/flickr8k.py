"""Source `flickr8k`: placeholder until implemented (registers nothing yet)."""
