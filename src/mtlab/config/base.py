"""The base of every config section (kept apart from :mod:`.schema` so that lower-level option models, such as each
weighting method's, can be declared next to their code without importing the whole run schema)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    """Base for every config section: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)
