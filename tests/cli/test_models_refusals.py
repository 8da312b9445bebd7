"""models.yaml refusals: a folder where the file goes is an error, not silently nothing, and
`models check` on a configuration that does not load says only that (no "0 findings" line
before the error)."""

from __future__ import annotations

from tests.support import Workspace


def test_a_models_yaml_that_is_a_folder_is_refused(workspace: Workspace) -> None:
    (workspace.root / "models.yaml").mkdir()
    for args in (("models", "show", "--json"), ("story", "list", "--json")):
        result = workspace.run(*args)
        assert result.code == 7, result
        assert result.json["error"]["code"] == "CONFIG_INVALID"
        assert result.json["error"]["message"] == "models.yaml is not a file"


def test_models_check_on_a_config_that_does_not_load(workspace: Workspace) -> None:
    (workspace.root / "models.yaml").write_text(
        "models:\n  cheap: {provider: x, name: y, input: -1, output: 1}\n", encoding="utf-8"
    )
    result = workspace.run("models", "check")
    assert result.code == 7, result
    assert "finding" not in result.stdout
    assert "error[CONFIG_INVALID]" in result.stderr
