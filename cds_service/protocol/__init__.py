"""The CDS Hooks wire format: the validated request and untrusted JSON parsing."""
