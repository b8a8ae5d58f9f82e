"""docs/mcmc.md, the user's page on the NUTS/HMC engines, states the options `inference/options.py` declares."""

from __future__ import annotations

import re
from pathlib import Path

from inference.options import ENGINE_OPTIONS, MCMC

DOC = Path(__file__).resolve().parents[1] / "docs" / "mcmc.md"


def test_the_options_table_lists_every_mcmc_option_with_its_default():
    rows = dict(re.findall(r"^\| `(\w+)` \| `([^`]*)` \|", DOC.read_text(), flags=re.M))
    declared = {o.name: o for o in ENGINE_OPTIONS if any(m in o.defaults for m in MCMC)}
    assert set(rows) == set(declared)
    for name, shown in rows.items():
        defaults = {repr(declared[name].defaults[m]) for m in MCMC if m in declared[name].defaults}
        assert shown.replace('"', "'") in defaults, (name, shown, defaults)


def test_the_page_links_to_its_own_headings_and_files():
    text = DOC.read_text()
    anchors = {re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-")
               for h in re.findall(r"^#+ (.+)$", text, flags=re.M)}
    for target in re.findall(r"\]\(([^)]+)\)", text):
        if target.startswith("#"):
            assert target[1:] in anchors, target
        elif not target.startswith("http"):
            assert (DOC.parent / target.split("#")[0]).exists(), target
    for path in re.findall(r"`((?:inference|benchmarks|tests|docs)/[\w/.]+)`", text):
        assert (DOC.parents[1] / path).exists(), path
