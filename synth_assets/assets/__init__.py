"""The pipeline's assets, one module per stage: ingest, chunks, generate, curate, export."""

# Shown on every asset in the UI: who to ask about the dataset.
OWNERS = ["team:synthetic-data"]
