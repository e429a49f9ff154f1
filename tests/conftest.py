"""Shared fixtures: the real SmolLM2 tokenizer with a tiny random model (fast), the real
embedded model (slow, used sparingly), and a real local HTTP server for endpoint tests."""

from __future__ import annotations

import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_MODE", "offline")


@pytest.fixture(scope="session")
def tiny():
    """A tiny random Llama with the real SmolLM2 tokenizer."""
    from simtrain import models

    return models.load(models.TINY, device="cpu")


@pytest.fixture(scope="session")
def smol():
    """The real embedded SmolLM2-135M-Instruct."""
    from simtrain import models

    return models.load(models.EMBEDDED, device="cpu")


@pytest.fixture
def persona():
    from simtrain.envs.personas import load_personas

    return load_personas("therapy", split="eval")[0]


class ChatServer:
    """A real OpenAI-compatible chat server on 127.0.0.1 whose behaviour tests script.

    ``handler(body) -> (status, payload | str, delay_s)`` decides each answer.
    """

    def __init__(self, handler):
        self.handler = handler
        self.requests: list[dict] = []
        server = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                body["_auth"] = self.headers.get("Authorization")
                server.requests.append(body)
                status, payload, delay = server.handler(body)
                if delay:
                    import time

                    time.sleep(delay)
                data = payload if isinstance(payload, str) else json.dumps(payload)
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.end_headers()
                    self.wfile.write(data.encode())
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def chat_reply(text: str, logprobs: list[dict] | None = None) -> dict:
    choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
    if logprobs is not None:
        choice["logprobs"] = {"content": logprobs}
    return {"id": "x", "object": "chat.completion", "choices": [choice]}


@pytest.fixture
def chat_server():
    servers = []

    def start(handler):
        s = ChatServer(handler)
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.close()
