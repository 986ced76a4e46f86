"""CDS service definitions (YAML), packaged as cds_service.hooks."""
