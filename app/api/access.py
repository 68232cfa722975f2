"""What the caller's key may do: the console asks once and hides what it may not."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel

from app.api.middleware import role_of

router = APIRouter(tags=["access"])


class KeyRole(BaseModel):
    # None: the service has no keys configured, so every call is allowed.
    role: Literal["classify", "edit", "admin"] | None


@router.get("/auth/role", operation_id="getKeyRole")
async def key_role(request: Request) -> KeyRole:
    return KeyRole(role=role_of(request.scope))
