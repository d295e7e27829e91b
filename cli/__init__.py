"""`dealflow`: the command line for people and scripts around a running pipeline."""
