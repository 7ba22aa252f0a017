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


def test_byte_lm_trains_scores_held_out_files_and_samples(tmp_path):
    """The example end to end at toy sizes (about 30 s): it learns (a
    uniform guess is 8 bits a byte), names its corpus, splits files whole,
    logs to TensorBoard, and its saved model loads with safe_mode."""
    import keras
    import numpy as np

    byte_lm = load("byte_lm")
    results = byte_lm.main([
        "--max-epochs", "3", "--steps-per-epoch", "10", "--max-files", "2",
        "--learning-rate", "3e-3",
        "--layers", "1", "--dim", "32", "--heads", "2", "--context", "32",
        "--out", str(tmp_path)])
    assert results["test_bits_per_byte"] < 7.0
    corpus = results["corpus"]
    assert len(corpus["sha256"]) == 64
    assert {f["split"] for f in corpus["files"]} == set(byte_lm.SPLITS)
    assert all(f["split"] == byte_lm.split_of(f["name"])
               for f in corpus["files"])
    assert results["sample"].startswith("def ")
    assert (tmp_path / "results.json").exists()
    assert any((tmp_path / "logs").rglob("*tfevents*"))
    model = keras.saving.load_model(tmp_path / "byte_lm.keras",
                                    safe_mode=True)
    # Greedy sampling is deterministic and adds the bytes asked for.
    again = byte_lm.sample(model, b"import ", 8, temperature=0)
    assert again == byte_lm.sample(model, b"import ", 8, temperature=0)
    assert len(again) == len(b"import ") + 8
    # The scorer: a model that knows nothing scores exactly 8 bits a byte.
    head = model.get_layer("next_byte")
    head.set_weights([np.zeros_like(w) for w in head.get_weights()])
    uniform = byte_lm.evaluate_bits_per_byte(model, [b"abc" * 30], 32)
    assert abs(uniform - 8.0) < 1e-6
