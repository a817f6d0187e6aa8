"""The release catalogue: organisation, models, immutable releases, artifacts, licences."""
