"""Corpus synthesis, lhotse glue, features and the frame bank."""
