"""Config: the schema, the YAML groups it checks, derived values, validation and the memory preflight.
Importing it registers the schema with Hydra's ConfigStore and the run-dir naming resolver."""

from notus_lab.config import schema, science  # noqa: F401
