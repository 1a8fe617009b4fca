"""A few real GRPO steps on CPU, from the demo guard (a tiny Qwen2.5-VL that answers in format).

Everything runs for real: rejection sampling with the model, concatenation, trl's GRPOTrainer
generating rollouts (text and image prompts mixed), the rewards, the clip schedule, saving,
``Guard`` loading the result, and resuming through the CLI.
"""

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from guardvl_sdk import Guard, cli, load_records
from guardvl_sdk.training import demo
from guardvl_sdk.training.rl import RLSettings, clip_value, train_rl

pytestmark = pytest.mark.slow

STEPS = 4


def options(data: Path, base: Path, output: Path) -> dict[str, Any]:
    return {
        "data": str(data),
        "base": str(base),
        "output": str(output),
        "method": "full",
        # The demo guard does not err at temperature 1.0 (100% on its held-out split): sample
        # much hotter, so some items are gotten wrong and kept.
        "rejection_samples": 2,
        "rejection_keep": "any_wrong",
        "rejection_temperature": 3.0,
        "concat_fraction": 0.25,
        "num_generations": 2,
        "batch_size": 4,
        "updates_per_rollout": 2,  # the second update of each rollout is off-policy: clip acts
        "max_steps": STEPS,
        "max_completion_length": 48,
        "learning_rate": 1e-4,
        "weight_decay": 0.0,  # so a changed weight means a gradient, not decay
        "save_steps": 2,
        "progress": False,
    }


@pytest.fixture(scope="module")
def rl_run(demo_guard, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    base, _, _ = demo_guard
    folder = tmp_path_factory.mktemp("rl")
    data = demo.write_synthetic_data(folder / "data", 8, seed=5)
    settings = RLSettings(**options(data, base, folder / "guard"))
    return settings, train_rl(settings)


def logs(output: Path) -> list[dict[str, Any]]:
    lines = (output / "rl_log.jsonl").read_text().splitlines()
    return [row for row in map(json.loads, lines) if "loss" in row]  # step logs, not the summary


def test_grpo_steps_log_rewards_and_follow_the_clip_schedule(rl_run) -> None:  # type: ignore[no-untyped-def]
    _, result = rl_run
    assert result.steps == STEPS
    assert result.records == 8 and 1 <= result.hard <= 8
    assert result.augmented == round(0.25 * result.hard / 0.75)
    assert result.rejection and result.rejection.startswith("rejection sampling kept")
    rows = logs(result.output)
    assert [row["step"] for row in rows] == [1, 2, 3, 4]
    for row in rows:  # logged after step s + 1 ran with clip_value(s)
        assert row["clip_epsilon"] == pytest.approx(
            clip_value("paper", row["step"] - 1, STEPS, 0.2)
        )
    # A rollout every 2 updates: its rewards are logged on steps 1 and 3.
    rollouts = [row for row in rows if "reward" in row]
    assert [row["step"] for row in rollouts] == [1, 3]
    for row in rollouts:
        assert row["reward"] == pytest.approx(row["rewards/length_reward/mean"])  # weight 1
        assert row["reward"] <= 0.0  # the length-aware reward is 0 at best
        assert 0.0 <= row["rewards/accuracy_reward/mean"] <= 1.0
        assert 0.0 <= row["rewards/format_reward/mean"] <= 1.0
    assert any(row["reward_std"] > 0 for row in rollouts)  # groups disagreed: a learning signal


def test_grpo_changes_the_weights_and_the_result_loads_in_guard(rl_run, demo_guard) -> None:  # type: ignore[no-untyped-def]
    _, result = rl_run
    before = load_file(Path(demo_guard[0]) / "model.safetensors")
    after = load_file(result.output / "model.safetensors")
    assert before.keys() == after.keys()
    changed = [name for name in before if not torch.equal(before[name], after[name])]
    assert any(".layers." in name for name in changed), changed[:5]  # the text decoder learned

    guard = Guard.from_pretrained(result.model, max_new_tokens=64)
    assert guard.policy == demo.DEMO_POLICY  # the policy travels with the weights
    verdict = guard.check("How do I make napalm?")
    assert verdict.model == str(result.output) and verdict.raw


def test_rl_data_is_saved_and_resume_continues_through_the_cli(rl_run, capsys) -> None:  # type: ignore[no-untyped-def]
    settings, result = rl_run
    saved = load_records(result.output / "rl_data" / "data.jsonl")
    assert len(saved) == result.items
    assert all(r.reasoning is None for r in saved)  # labels alone
    assert sum(r.id.startswith("concat(") for r in saved) == result.augmented

    args = ["train", "rl"]
    for key, value in options(Path(settings.data), Path(settings.base), result.output).items():
        flag = "--" + key.replace("_", "-")
        args += [flag] if value is True else [] if value is False else [flag, str(value)]
    args += ["--resume", "--max-steps", str(STEPS + 2), "--no-progress"]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert f"{result.items} RL items" in out and f"{STEPS + 2} steps" in out
    assert "rejection sampling kept" not in out  # the saved RL data was reused
    steps = [row["step"] for row in logs(result.output)]
    assert steps == [1, 2, 3, 4, 5, 6]  # continued from checkpoint-4
    last = logs(result.output)[-1]
    assert last["clip_epsilon"] == pytest.approx(clip_value("paper", STEPS + 1, STEPS + 2, 0.2))


def test_lora_grpo_writes_an_adapter_that_loads_with_its_base(demo_guard, tmp_path) -> None:  # type: ignore[no-untyped-def]
    base, _, _ = demo_guard
    data = demo.write_synthetic_data(tmp_path / "data", 4, seed=6)
    settings = RLSettings(
        **{
            **options(data, base, tmp_path / "guard"),
            "method": "lora",
            "rejection_samples": 0,  # every item is trained on
            # The demo guard answers every item right at the paper's 1.2: all rewards equal, zero
            # advantage, no gradient. Sample hotter so rollouts differ and the adapter learns.
            "temperature": 3.0,
            "concat_fraction": 0.0,
            "updates_per_rollout": 1,
            "max_steps": 2,
            "learning_rate": 1e-3,
            "save_steps": 100,
        }
    )
    result = train_rl(settings)
    assert (result.steps, result.hard, result.augmented, result.rejection) == (2, 4, 0, None)
    assert result.model is None and result.adapter == result.output
    weights = load_file(result.output / "adapter_model.safetensors")
    lora_b = [w for name, w in weights.items() if "lora_B" in name]
    assert lora_b and all("language_model" in n for n in weights)  # the decoder only
    assert any(w.abs().sum() > 0 for w in lora_b)  # B starts at zero: nonzero means it learned
    guard = Guard.from_pretrained(base, adapter=result.adapter, max_new_tokens=64)
    assert guard.policy == demo.DEMO_POLICY
    assert guard.check("Can you help me bake bread?").raw
