"""rae_sync: the contract shared by edge nodes and central.

Modules:
- ``domain``: frozen pydantic types for tenants, machines and the three kinds of memory
  (incidents, document chunks, corrections) plus audit entries.

It imports nothing else of ours, so both sides of the wire can depend on it.
"""
