"""Corpus preparation: splits of a source, and the Beam pipeline that tokenizes them into shards."""
