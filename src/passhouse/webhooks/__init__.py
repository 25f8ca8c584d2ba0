"""Webhooks: tell an issuer's systems what happened (ADR 0018)."""
