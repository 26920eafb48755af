"""The docs: the config reference is the schema's and the YAML homes' own text, current; every field has a help line;
the statistics page's tables are `python -m notus_lab.calibration`'s output, written by its generator; the README
stays short and links into the docs; the strategy registry is the one list of `data=` names."""

import dataclasses
import importlib.util
import re
from types import MappingProxyType

import pytest
from omegaconf import OmegaConf

from notus_lab.config import reference, schema
from notus_lab.config.homes import GROUPS
from notus_lab.config.options import CONF_DIR, group_options, load_option
from notus_lab.config.strategies import NAMES, RULES, STRATEGIES
from tests.helpers import ROOT


def schema_keys(cls=schema.NotusConfig, prefix=""):
    for f in dataclasses.fields(cls):
        kind = cls.__dataclass_fields__[f.name].default_factory if f.name else None
        nested = dataclasses.is_dataclass(kind) if callable(kind) else False
        yield f"{prefix}{f.name}"
        if nested:
            yield from schema_keys(kind, f"{prefix}{f.name}.")


def test_the_config_reference_is_current():
    """docs/reference/config.md is what `python -m notus_lab.config.reference` writes now: a default changed in
    conf/, or a help line or an allowed value changed in schema.py, without regenerating the page fails here."""
    page = reference.PAGE.read_text()
    assert page == reference.render(reference.default_run()), "stale: run python -m notus_lab.config.reference"


def test_the_reference_covers_every_schema_field():
    page = reference.PAGE.read_text()
    keys = list(schema_keys())
    assert len(keys) > 100
    missing = [k for k in keys if f"| `{k}` |" not in page and f"| **`{k}`** |" not in page]
    assert not missing, missing


def test_a_field_without_a_help_line_fails_the_reference(monkeypatch):
    """A field whose help is missing (planted here on generation.temperature) is an error naming the field, never a
    blank cell in the page."""
    field = schema.GenerationConfig.__dataclass_fields__["temperature"]
    monkeypatch.setattr(field, "metadata", MappingProxyType({**field.metadata, "help": ""}))
    with pytest.raises(reference.MissingHelp, match=r"generation\.temperature has no help line"):
        reference.render()


def test_every_field_has_a_help_line_and_every_range_is_declared_once():
    for key, default, kind, allowed, help in reference.rows():
        assert help.strip(), key
    # validate.py reads what schema.py declares: no range of its own for a declared field
    text = (ROOT / "notus_lab" / "config" / "validate.py").read_text()
    assert '"an integer > 0")' not in text and '"a number in [0, 1]")' not in text


def _keys_with_lines(path):
    """(key, its line, the line above) of every mapping key of a YAML file, by indentation."""
    lines = path.read_text().splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"^(\s*)([\w/]+):(\s|$)", line)
        if m and not line.lstrip().startswith("#"):
            yield m[2], line, lines[i - 1] if i else ""


@pytest.mark.parametrize("group", GROUPS)
def test_every_defaults_key_points_to_its_help(group):
    """A _defaults.yaml says where each key's meaning is (its help beside the field in schema.py, and the generated
    reference), and every key it holds has that help."""
    path = CONF_DIR / group / "_defaults.yaml"
    assert "docs/reference/config.md" in path.read_text()
    keys = {row[0] for row in reference.rows()}
    values = OmegaConf.to_container(OmegaConf.load(path))

    def leaves(node, prefix):
        for k, v in node.items():
            if isinstance(v, dict) and f"{prefix}{k}" not in ("hardware.deepspeed", "hardware.fsdp"):
                yield from leaves(v, f"{prefix}{k}.")
            else:
                yield f"{prefix}{k}"

    assert not [k for k in leaves(values, f"{group}.") if k not in keys]


def test_every_config_yaml_key_says_what_it_is():
    """conf/config.yaml, the file a newcomer opens first: a comment on every key's line or the line above it."""
    bare = [
        line
        for key, line, above in _keys_with_lines(CONF_DIR / "config.yaml")
        if "#" not in line and not above.lstrip().startswith("#")
    ]
    assert not bare, bare


def test_the_statistics_tables_are_the_calibration_commands_output():
    """Each generated block names one of the generator's commands and the date it ran, and holds what that command
    prints (its caption line and markdown tables; the slow tables are not rerun here)."""
    spec = importlib.util.spec_from_file_location("calibration_tables", ROOT / "scripts" / "calibration_tables.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    page = (ROOT / "docs" / "statistics.md").read_text()
    blocks = list(gen.BLOCK.finditer(page))
    assert sorted(b["command"] for b in blocks) == sorted(gen.COMMANDS)
    captions = {
        gen.COMMANDS[0]: "Coverage of the nominal 95 % interval",
        gen.COMMANDS[1]: "Margin ±",
        gen.COMMANDS[2]: "Effects of a 2 x 2 x 2 design",
    }
    for b in blocks:
        body = b["body"]
        assert body.startswith(captions[b["command"]]), b["command"]
        assert re.search(r"^\|.*\|\n\|(---\|)+$", body, re.M), b["command"]  # a markdown table, as printed
        assert gen.block(b["command"], body, b["date"]) == b[0]  # the generator's own format, untouched


def test_the_readme_is_short_and_links_into_the_docs():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 150
    for page in ("getting-started", "configs", "data", "studies", "statistics", "judges", "hardware", "results"):
        assert f"(docs/{page}.md)" in readme and (ROOT / "docs" / f"{page}.md").is_file()
    nav = (ROOT / "mkdocs.yml").read_text()
    assert all(f"{p.stem}.md" in nav for p in (ROOT / "docs").glob("*.md"))


def test_one_registry_of_strategies_keyed_by_what_data_picks():
    assert sorted(NAMES) == group_options("data") and schema.DataConfig.STRATEGIES == NAMES
    for name in NAMES:
        option = OmegaConf.merge(OmegaConf.structured(schema.DataConfig), load_option("data", name))
        assert (option.strategy, option.vintage) == (STRATEGIES[name].rule, STRATEGIES[name].vintage), name
    assert STRATEGIES["critique_fixed"].signal == "critique" and set(RULES) <= set(NAMES)
