"""Job entrypoints of the cvpipe image: ``split`` (processing) and ``train`` (training)."""
