"""The parts of the `tail` source (pipeline/sources/tail.py): positions, files followed,
multiline records. See docs/tail.md for what it promises through rotations and kills."""
