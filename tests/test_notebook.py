"""`notebooks/explore_thresholds.ipynb` runs top to bottom (nbclient + ipykernel) on the default
job (embedded corpus, Tekken) swept into a temporary directory, and shows its table and plots."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.__main__ import main

pytestmark = pytest.mark.slow  # a full default run + a kernel: about 20 s

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "explore_thresholds.ipynb"


@pytest.fixture(scope="module")
def default_run(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("nbrun")
    assert main(["sweep", "--no-progress", "--config", str(ROOT / "configs" / "demo.toml"),
                 "--set", f'artifacts_dir="{tmp / "artifacts"}"',
                 "--set", f'reports_dir="{tmp / "reports"}"']) == 0
    return tmp / "artifacts" / "demo"


def test_notebook_executes_on_the_default_run(default_run, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    monkeypatch.setenv("PIPELINE_RUN_DIR", str(default_run))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(ROOT)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    data = [o["data"] for o in outputs if o.output_type in ("execute_result", "display_data")]
    svgs = [d["image/svg+xml"] for d in data if "image/svg+xml" in d]
    assert len(svgs) == 3 and all("<polyline" in s for s in svgs)
    tables = [d["text/html"] for d in data if "text/html" in d]
    assert any("heldout_identical_share" in t and "keep_korean_morphemes" in t for t in tables)
    # the rules for text not counted, switched on one at a time
    assert any("keep_latin_acronyms" in t and "max_ksx1001=500" in t for t in tables)
    params = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    assert 'os.environ.get("PIPELINE_RUN_DIR", "artifacts/default")' in params.source
