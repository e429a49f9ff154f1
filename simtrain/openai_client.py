"""A small async client for OpenAI-compatible chat endpoints (vLLM, SGLang, Ollama, OpenAI).

Used by the HTTP task agent and the ``openai`` judge. Requests run concurrently under a cap,
each with a timeout and retries with exponential backoff on timeouts, connection errors, 429
and 5xx. The API key is read from an environment variable at call time and never logged.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any
import httpx
import concurrent.futures

from pydantic import BaseModel, ConfigDict, Field


class EndpointError(RuntimeError):
    """A request failed for good (after retries) or the server's answer could not be read."""


class EndpointConfig(BaseModel):
    """An OpenAI-compatible endpoint; also the run config's ``agent.endpoint`` and
    ``judge.endpoint`` sections, passed as they are (one set of defaults for both)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    base_url: str | None = Field(None, description="Endpoint base URL, e.g. http://127.0.0.1:8000/v1.")
    model: str | None = Field(None, description="The served model name.")
    api_key_env: str = Field("OPENAI_API_KEY", description="Environment variable holding the API key (the name, never the key).")
    concurrency: int = Field(8, ge=1, description="Concurrent requests.")
    timeout_s: float = Field(60.0, gt=0, description="Per-request timeout in seconds.")
    max_retries: int = Field(3, ge=0, description="Retries with exponential backoff on timeouts, connection errors, 429 and 5xx.")
    backoff_s: float = Field(0.5, ge=0, description="First backoff in seconds; doubles on each retry.")
    extra_body: dict[str, Any] = Field(default_factory=dict, description="Extra fields sent in every request body.")

    def require(self, where: str) -> "EndpointConfig":
        """This endpoint, after checking it names a URL and a model; ``where`` is the config
        path the error message points at (e.g. 'judge.endpoint')."""
        for key in ("base_url", "model"):
            if not getattr(self, key):
                raise ValueError(f"{where}.{key} is not set")
        return self


def _headers(cfg: EndpointConfig) -> dict[str, str]:
    headers = {"Content-Type": "application/json"}
    key = os.environ.get(cfg.api_key_env)
    if key:
        headers["Authorization"] = f"Bearer {key}"
    return headers


async def _one(client, cfg: EndpointConfig, sem: asyncio.Semaphore, body: dict) -> dict:

    url = cfg.base_url.rstrip("/") + "/chat/completions"
    last: str = ""
    for attempt in range(cfg.max_retries + 1):
        if attempt:
            await asyncio.sleep(cfg.backoff_s * 2 ** (attempt - 1))
        async with sem:
            try:
                resp = await client.post(url, json=body, headers=_headers(cfg), timeout=cfg.timeout_s)
            except (httpx.TimeoutException, httpx.TransportError) as err:
                last = f"{type(err).__name__}"
                continue
        if resp.status_code == 429 or resp.status_code >= 500:
            last = f"HTTP {resp.status_code}"
            continue
        if resp.status_code >= 400:  # a client error will not fix itself: fail now
            raise EndpointError(f"{url}: HTTP {resp.status_code}: {resp.text[:200]}")
        try:
            data = resp.json()
            data["choices"][0]["message"]
        except (ValueError, KeyError, IndexError, TypeError):
            last = "malformed response body"
            continue
        return data
    raise EndpointError(f"{url}: gave up after {cfg.max_retries + 1} attempts ({last})")


async def _many(cfg: EndpointConfig, bodies: list[dict]) -> list[dict | EndpointError]:

    sem = asyncio.Semaphore(max(1, cfg.concurrency))
    async with httpx.AsyncClient() as client:
        tasks = [_one(client, cfg, sem, b) for b in bodies]
        return await asyncio.gather(*tasks, return_exceptions=True)


def chat_completions(cfg: EndpointConfig, requests: list[dict]) -> list[dict | EndpointError]:
    """Send many chat requests concurrently. Each request is a body without ``model``;
    the result list holds the response JSON or the :class:`EndpointError` for that request."""
    bodies = [{"model": cfg.model, **cfg.extra_body, **r} for r in requests]
    results = _run(_many(cfg, bodies))
    return [r if isinstance(r, (dict, EndpointError)) else EndpointError(str(r)) for r in results]


def _run(coro):
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    # Called from inside a running loop (e.g. a notebook): run in a helper thread.

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()
