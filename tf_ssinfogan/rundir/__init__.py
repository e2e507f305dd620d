"""The run folder: every path in it and its configuration file (`paths`), checkpoints (`checkpoints`: make, save,
verify, restore the newest readable, load a run's model) and atomic file writes (`fileio`)."""
