"""Data: correctness tables in the dataset folder format, and everything that reads or writes them.

* ``folder``: the folder format (card, prompts, outcomes, models), validation listing every problem, ``Dataset``;
* ``registry``: named datasets, where their folders are (download cache or bundled), ``load_dataset``;
* ``tables``: the one reader of user tables (CSV / JSONL / parquet) with errors located by file line;
* ``download`` + ``sources/``: fetching upstream files and one converter per source;
* ``safepickle`` + ``unpickled``: the restricted unpickler for upstream pickles.
"""
