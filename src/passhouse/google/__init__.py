"""Google Wallet, the twin of pkpass/: classes and objects rendered from a template, the
mapping from an Apple pass.json, save-link JWTs and callback verification.

Pure functions: no database, no network. The REST client lives in push/google.py.
"""
