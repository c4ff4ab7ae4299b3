"""The gateway's config: schema, loading, secrets and shipped resources."""
