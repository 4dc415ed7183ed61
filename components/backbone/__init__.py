"""Backbones: export Hugging Face BERT checkpoints to the TF Hub encoder format and load them.

Importing this package does not import TensorFlow; the functions import it when called.
"""
