"""Strict JSON request bodies: ``NaN``, ``Infinity``, ``-Infinity`` and integers outside the 64-bit
signed range are refused as a JSON decode error (FastAPI answers 422, ``json_invalid``), so no
route ever sees them (a NaN search limit used to reach the database and fail with a 500 whose
traceback quoted the request).

Every router of the API uses ``StrictJsonRoute``; ``strict_json_loads`` is also what the procedure
route parses its raw body with."""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

INT_MIN, INT_MAX = -(2**63), 2**63 - 1


def _constant(name: str) -> Any:
    raise json.JSONDecodeError(f"{name} is not allowed (not standard JSON)", "", 0)


def _integer(text: str) -> int:
    if len(text.lstrip("-")) > 19:
        raise json.JSONDecodeError("integer out of range", "", 0)
    value = int(text)
    if not INT_MIN <= value <= INT_MAX:
        raise json.JSONDecodeError("integer out of range", "", 0)
    return value


def _float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):  # 1e999
        raise json.JSONDecodeError("number out of range", "", 0)
    return value


def strict_json_loads(raw: bytes | str) -> Any:
    """``json.loads`` without NaN/Infinity and with integers and floats in range (JSONDecodeError)."""
    return json.loads(raw, parse_constant=_constant, parse_int=_integer, parse_float=_float)


class StrictJsonRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = strict_json_loads(await self.body())
        return self._json


class StrictJsonRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict_handler(request: Request) -> Response:
            return await handler(StrictJsonRequest(request.scope, request.receive))

        return strict_handler


__all__ = ["StrictJsonRoute", "strict_json_loads"]
