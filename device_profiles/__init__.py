"""Device profiles: one YAML file per device (package data)."""
