"""Control-plane state shared by every use case: the audit log."""
