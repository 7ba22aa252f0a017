import importlib.util
import pathlib

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"


def load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quickstart_trains_saves_and_reloads(tmp_path):
    accuracy = load("quickstart").main(["--epochs", "3", "--out",
                                        str(tmp_path)])
    assert (tmp_path / "quickstart.keras").exists()
    # Always guessing the majority class scores about 0.5 on this task.
    assert accuracy > 0.8
