"""The service around the analysis: store, registry, DICOM listener, work queue interface, the
workers' orchestrator, deliveries and PACS I/O."""
