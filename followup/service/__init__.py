"""The service around the analysis: store, registry, DICOM listener, workers' pipeline, PACS I/O."""
