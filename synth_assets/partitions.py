"""One partition per document: the key is derived from the file's path (readable, stable)."""

import dagster as dg

DOCUMENTS_PARTITIONS_NAME = "documents"

documents_partitions = dg.DynamicPartitionsDefinition(name=DOCUMENTS_PARTITIONS_NAME)
