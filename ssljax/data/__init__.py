"""From text to batches: corpora (`corpus`), token rows (`rows`), pretraining examples per
objective (`examples`) and the resumable per-process batch stream (`batches`)."""
