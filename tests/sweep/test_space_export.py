"""search.export: `true`/`false` as before, or `{top: K, ensemble: bool}` with one clear error per mistake."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from cnnsweep.sweep.space import ExportSpec, SearchConfig, _format

SPACE = {"train.lr": {"loguniform": [1e-4, 1e-2]}}


@pytest.mark.parametrize("value, want", [(True, True), (False, False), ({"top": 3, "ensemble": True},
                                          ExportSpec(top=3, ensemble=True)), ({"top": 2}, ExportSpec(top=2))])
def test_export_accepts_a_flag_or_a_mapping(value, want):
    got = SearchConfig(export=value, space=SPACE).export
    assert got == want and bool(got) == bool(want)


@pytest.mark.parametrize("value, line", [({"top": 0}, "search.export.top: must be greater than 0"),
                                         ({"tpo": 3}, "search.export.tpo: unknown key")])
def test_a_bad_mapping_is_one_line_naming_its_key(value, line):
    with pytest.raises(ValidationError) as info:
        SearchConfig(export=value, space=SPACE)
    assert _format(info.value) == line
