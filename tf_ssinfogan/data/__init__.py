"""Data: sources (arrays, TFDS, image folders, label columns and their checks), data sets built offline with known
factors (`synthetic`), labels measured from pixels (`moments`), and the step-indexed training stream (`stream`)."""
