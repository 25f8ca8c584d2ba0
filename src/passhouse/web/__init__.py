"""HTTP: the PassKit web service for devices, the admin API for issuers, the share pages."""
