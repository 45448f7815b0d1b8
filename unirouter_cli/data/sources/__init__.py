"""Converters from upstream files to the dataset folder format, one module per source.

Each ``convert_<name>(src_dir) -> (card, prompts, outcomes, models)`` reads upstream files already on disk."""
