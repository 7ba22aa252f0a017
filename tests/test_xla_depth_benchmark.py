"""benchmarks/xla_depth.py runs end to end on a tiny grid, and judges the
issue's targets from its rows."""

import json

from benchmarks import common, xla_depth


def test_tiny_grid_writes_measured_rows(tmp_path, monkeypatch):
    monkeypatch.setattr(common, "RESULTS", str(tmp_path))
    # One configuration: each runs in its own process (TF's start-up).
    xla_depth.main(["--depths", "2", "--widths", "8", "--only",
                    "scanned", "graph", "fused", "--steps", "5",
                    "--step-seconds", "0", "--name", "tiny"])
    payload = json.loads((tmp_path / "tiny.json").read_text())
    [row] = payload["rows"]
    assert (row["depth"], row["stack"], row["mode"], row["norm"]) == (
        2, "scanned", "graph", "fused")
    assert row["status"] == "ok", row
    assert row["first_step_s"] > 0 and row["step_ms"] > 0
    assert len(row["step_samples_ms"]) == 5
    assert 0 < row["compile_rss_gb"] < row["peak_rss_gb"]
    # 2 blocks of (attention 4 x (8x8 + 8), 2 norms of 2 x 8, feed-forward
    # 8x32 + 32 + 32x8 + 8), then the final norm's 2 x 8.
    assert row["parameters"] == 2 * (4 * 72 + 32 + 552) + 16
    assert "| depth | width |" in (tmp_path / "tiny.md").read_text()


def test_targets_are_judged_from_the_rows():
    def row(depth, stack, first, step, rss=1.0):
        return dict(depth=depth, width=32, placement="pre", stack=stack,
                    mode="xla", norm="fused", status="ok",
                    first_step_s=first, step_ms=step, peak_rss_gb=rss)

    rows = [row(6, "scanned", 5.0, 4.0), row(48, "scanned", 9.0, 20.0),
            row(6, "unrolled", 9.0, 5.0), row(48, "unrolled", 90.0, 19.0)]
    text = xla_depth.targets(rows, [32])
    assert "is 1.80x depth 6's (target at most 2x: met)" in text
    assert "(target under 3 GB: met)" in text
    assert "missed (48: 1.05x)" in text
    rows[1] = row(48, "scanned", 11.0, 10.0, rss=3.5)
    text = xla_depth.targets(rows, [32])
    assert "2.20x depth 6's (target at most 2x: missed)" in text
    assert "(target under 3 GB: missed)" in text
    assert "fused: scanned XLA step no slower than unrolled XLA at every " \
           "depth: met" in text


HLO = """
ENTRY %main (a: f32[4,8]) -> f32[4,8] {
  %wrapped_broadcast.3 = f32[6,8]{1,0} fusion(%c), kind=kLoop, metadata={op_type="EmptyTensorList" op_name="acc"}
  %add_dynamic-update-slice_fusion.1 = f32[6,8]{1,0} fusion(%a, %b), kind=kLoop, metadata={op_type="AddN"}
  %MatMul.4 = f32[4,8]{1,0} dot(%a, %w), lhs_contracting_dims={1}, metadata={op_type="MatMul"}
  %ynn_fusion = f32[8]{0} fusion(%x), kind=kCustom, metadata={op_type="Sum"}
  %copy.2 = f32[4,8]{1,0} copy(%a)
  %while.1 = (s32[], f32[4,8]{1,0}) while(%t), condition=%c, body=%b
  ROOT %subtract_multiply_fusion = f32[4,8]{1,0} fusion(%a, %b), kind=kLoop
}
"""


def test_profile_groups_instructions_by_what_they_do():
    from benchmarks import xla_profile

    table = xla_profile.instructions(HLO)
    assert table["MatMul.4"] == ("dot", "f32[4,8]{1,0}", "MatMul")
    assert table["subtract_multiply_fusion"][0] == "fusion"
    groups = {name: xla_profile.category(name, *table[name][::2])
              for name in table}
    assert groups == {
        "wrapped_broadcast.3": "loop: zero-filled buffers",
        "add_dynamic-update-slice_fusion.1": "loop: slice / update",
        "MatMul.4": "matmul", "ynn_fusion": "reduction",
        "copy.2": "copy", "while.1": "elementwise",
        "subtract_multiply_fusion": "elementwise"}
    assert "while" in xla_profile.CONTAINERS


def test_profile_ratios_summarize_processes():
    from benchmarks import xla_profile

    def row(process, variant, ms):
        return dict(kind="add_norm", shape=[8, 4], process=process,
                    variant=variant, step_ms=ms)

    rows = [row(0, "fused", 10.0), row(0, "keras", 15.0),
            row(1, "fused", 10.0), row(1, "keras", 20.0),
            row(2, "fused", 10.0), row(2, "keras", 12.0)]
    assert xla_profile.ratios(rows) == (
        "- add+norm 8x4, Keras / fused step (speedup): median 1.50x, range "
        "1.20-2.00x over 3 process(es): 1.50, 2.00, 1.20")
