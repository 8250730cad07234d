"""`flexent plot-strategies` writes real PNG files."""

from __future__ import annotations

from flexent.cli import main
from flexent.commands.plot_strategies import synthetic_entropy

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_plot_strategies_writes_pngs(tmp_path):
    rc = main(["plot-strategies", "--out", str(tmp_path), "--total-steps", "20",
               "--strategies", "id", "od", "target"])  # fmt: skip
    assert rc == 0
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["strategy_id.png", "strategy_od.png", "strategy_target.png"]
    for name in files:
        data = (tmp_path / name).read_bytes()
        assert data[:8] == PNG_SIGNATURE and len(data) > 1000


def test_synthetic_plant_directions():
    # H' = H + 0.03 w_up (2 H0 - H) - 0.03 w_low H - 0.01 H at H = H0 = 1:
    # static 0.99; w_up = 1: 1 + 0.03 - 0.01 = 1.02; w_low = 1: 1 - 0.03 - 0.01 = 0.96
    assert synthetic_entropy(1.0, 0.0, 0.0, h_init=1.0) == 0.99
    assert abs(synthetic_entropy(1.0, 1.0, 0.0, h_init=1.0) - 1.02) < 1e-12
    assert abs(synthetic_entropy(1.0, 0.0, 1.0, h_init=1.0) - 0.96) < 1e-12
