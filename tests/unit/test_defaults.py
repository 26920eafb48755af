"""One home for every default: conf/config.yaml for the sections no group owns, conf/<group>/_defaults.yaml for what
a group's options start from. The schema reads them and holds no value of its own; the default run's every value
is its home's, or the choice of one of the default options."""

import ast
import dataclasses

import pytest
from omegaconf import OmegaConf

from notus_lab.config import schema
from notus_lab.config.homes import GROUPS, home, homes
from notus_lab.config.options import CONF_DIR, group_options
from tests.helpers import ROOT, compose

PREFIX = {
    "WorldConfig": "data.world",
    "DataConfig": "data",
    "TinyConfig": "base.tiny",
    "ShapeConfig": "base.shape",
    "BaseConfig": "base",
    "ModelConfig": "model",
    "OptimizerConfig": "optimizer",
    "NodeConfig": "hardware.node",
    "HardwareConfig": "hardware",
    "TrainConfig": "train",
    "WandbConfig": "wandb",
    "EvalConfig": "eval",
    "GenerationConfig": "generation",
    "JudgeConfig": "judge",
    "ExportConfig": "export",
    "StudyConfig": "study",
    "NotusConfig": "",
}


def schema_fields():
    """(class, field, key, the default's source text) of every dataclass field in schema.py."""
    tree = ast.parse((ROOT / "notus_lab" / "config" / "schema.py").read_text())
    for cls in (n for n in tree.body if isinstance(n, ast.ClassDef) and n.name in PREFIX):
        for stmt in cls.body:
            if isinstance(stmt, ast.AnnAssign) and not ast.unparse(stmt.annotation).startswith("ClassVar"):
                name = stmt.target.id
                key = f"{PREFIX[cls.name]}.{name}".lstrip(".")
                yield cls.name, name, key, ast.unparse(stmt.value) if stmt.value else None


def test_the_schema_holds_no_value_of_its_own():
    """Every field is required (MISSING: every option sets it), a nested section, or read from its home under its
    own key: a literal default here would be a second home (23 were, 5 of them disagreeing with the YAML)."""
    bad = []
    for cls, name, key, default in schema_fields():
        ok = (default or "").startswith((f"knob('{key}',", "required(")) or (
            (default or "").startswith("section(") and default.split(",")[0].endswith("Config")
        )
        if not ok:
            bad.append(f"{cls}.{name} = {default}")
    assert not bad, bad


def test_every_home_value_belongs_to_a_field_and_no_key_has_two_homes():
    keys = {key for *_, key, _ in schema_fields()}

    def leaves(node, prefix=""):
        for k, v in node.items():
            if isinstance(v, dict) and not (prefix.startswith("hardware.") and k in ("deepspeed", "fsdp")):
                yield from leaves(v, f"{prefix}{k}.")
            else:
                yield f"{prefix}{k}"

    found = list(leaves(homes()))
    assert not [k for k in found if k not in keys]  # a value no field reads
    own = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "config.yaml"))
    assert not set(own) & set(GROUPS)  # config.yaml never sets what a group's _defaults.yaml owns


def test_the_default_runs_values_are_their_homes_or_a_default_options_choice():
    """Compose the default run; every value no default option sets is its home's. The five that used to live twice
    (train.epochs, max_length, max_prompt_length, save_steps, hardware.eval_batch_size) are held here."""
    cfg = OmegaConf.to_container(compose(), resolve=True)
    chosen = set()
    for group, option in (
        ("data", "mean_rating"),
        ("model", "full"),
        ("optimizer", "adamw"),
        ("base", "tiny"),
        ("hardware", "cpu"),
        ("judge", "truth"),
    ):
        node = OmegaConf.to_container(OmegaConf.load(CONF_DIR / group / f"{option}.yaml"))
        node.pop("defaults", None)
        prefix = "" if group == "base" else f"{group}."  # base options are `@package _global_`

        def walk(n, p):
            for k, v in n.items():
                chosen.add(f"{p}{k}")
                if isinstance(v, dict):
                    walk(v, f"{p}{k}.")

        walk(node, prefix)
    differ = []
    for *_, key, default in schema_fields():
        if (default or "").startswith(("required(", "section(")) or key in chosen:
            continue
        value = cfg
        for part in key.split("."):
            value = value[part]
        if value != home(key):
            differ.append((key, value, home(key)))
    assert not differ, differ
    # the science knobs the default run uses are in config.yaml or pointed at from it
    text = (CONF_DIR / "config.yaml").read_text()
    assert all(k in text for k in ("beta:", "loss_type:", "rpo_alpha:", "learning rate", "conf/base/tiny.yaml"))


def test_a_dataclass_built_in_code_starts_from_the_same_homes():
    d = schema.DataConfig(strategy="mean_rating")
    assert (d.test_size, d.tie_policy, d.world.rows) == (
        home("data.test_size"),
        home("data.tie_policy"),
        home("data.world.rows"),
    )
    assert dataclasses.fields(schema.DataConfig)  # a dataclass still


@pytest.mark.parametrize("group", GROUPS)
def test_a_groups_defaults_file_is_not_one_of_its_options(group):
    assert "_defaults" not in group_options(group) and (CONF_DIR / group / "_defaults.yaml").is_file()
