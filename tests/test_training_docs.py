"""The scale-out configs in examples/accelerate parse, and the training example runs offline."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "examples" / "accelerate"


def test_the_deepspeed_zero3_config_parses() -> None:
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(CONFIGS / "deepspeed_zero3.yaml"))
    assert config.distributed_type.value == "DEEPSPEED"
    deepspeed_file = ROOT / config.deepspeed_config["deepspeed_config_file"]
    assert deepspeed_file == CONFIGS / "ds_zero3.json"
    deepspeed = json.loads(deepspeed_file.read_text())
    assert deepspeed["zero_optimization"]["stage"] == 3
    # Batch sizes come from the command's options through the Trainer's "auto" filling.
    for key in ("train_micro_batch_size_per_gpu", "gradient_accumulation_steps"):
        assert deepspeed[key] == "auto"


def test_the_docs_multi_gpu_command_parses() -> None:
    from guardvl_sdk import cli

    doc = (ROOT / "docs" / "training.md").read_text()
    assert "accelerate launch --config_file examples/accelerate/deepspeed_zero3.yaml" in doc
    options = [
        "--method", "full", "--bf16", "--gradient-checkpointing", "--learning-rate", "5e-5",
        "--epochs", "3", "--batch-size", "4", "--gradient-accumulation-steps", "6",
    ]  # fmt: skip
    assert " ".join(options) in doc.replace("\\\n    ", "")
    args = cli.build_parser().parse_args(
        ["train", "sft", "--data", "d.jsonl", "--base", "b", "--output", "o", *options]
    )
    assert (args.method, args.bf16, args.gradient_accumulation_steps) == ("full", True, 6)


@pytest.mark.slow
def test_the_custom_policy_example_runs_offline(tmp_path) -> None:
    script = ROOT / "examples" / "train_custom_policy.py"
    run = subprocess.run(
        [sys.executable, str(script), "--steps", "2", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert "trained 2 steps" in run.stdout and "policy 'acme-pharmacy'" in run.stdout
    assert (tmp_path / "guard" / "adapter_model.safetensors").is_file()
    assert (tmp_path / "guard" / "guardvl_policy.json").is_file()
