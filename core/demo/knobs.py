"""The knobs of the demo world (difficulty, sizes, click model), with documented defaults."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class DemoKnobs:
    """Everything about the demo world that is not its size or seed.

    Difficulty (1), small products among larger distractors on busy backgrounds:
      product_scale, distractor_scale: the longest side of a glyph as a fraction of the image side.
      n_distractors: inclusive range of distractor objects per creative.
      p_distractor_from_category: chance a distractor is another category's product glyph (else scene emoji).
      background_weights: relative frequency of photo crops, patterns and noise backgrounds.
    Difficulty (2), ambiguous texts:
      p_name_in_text: chance the category name appears in the ad text.
      keyword_sources: chance each keyword comes from the category's own list, its group's shared list,
        or the marketing words every category uses.
      p_name_printed: chance the category name is printed on the creative next to brand and slogan.
    Population and clicks: see docs/demo_world.md.
    """

    # catalogue
    n_categories: int | None = None  # None: min(72, n_ads // 10), at least 8
    n_unseen: int | None = None  # None: one category in six, held out to the test split only
    split_fractions: tuple[float, float, float] = (0.7, 0.1, 0.2)  # train / val / test of seen categories
    chinese_fraction: float = 0.3
    # image difficulty
    image_size: int = 512
    jpeg_quality: int = 85
    product_scale: tuple[float, float] = (0.10, 0.20)
    distractor_scale: tuple[float, float] = (0.22, 0.42)
    n_distractors: tuple[int, int] = (2, 5)
    p_distractor_from_category: float = 0.5
    background_weights: dict[str, float] = field(default_factory=lambda: {"photo": 0.45, "pattern": 0.3, "noise": 0.25})
    # text ambiguity
    p_name_in_text: float = 0.35
    p_name_printed: float = 0.25
    keyword_sources: tuple[float, float, float] = (0.45, 0.3, 0.25)  # own / group / shared
    # users and interests
    feature_share: float = 0.6  # share of the affinity variance explained by the one-hot features
    interest_drift: float = 0.3  # weight of fresh noise in the second period's affinity
    click_sharpness: float = 1.5  # gamma: click weight = exp(gamma * affinity)
    # impressions and clicks
    impressions_per_ad: int = 500  # per ordinary ad and period (capped at n_users // 2)
    targeting_sharpness: float = 2.0  # beta: ordinary ads reach users with weight exp(beta * affinity); 0 = uniform
    ad_ctr_median: float = 0.05  # ordinary ads: CTR ~ lognormal(median, sigma)
    ad_ctr_sigma: float = 0.5
    # ad packages (long tail, low CTR)
    n_packages: int = 16
    n_unseen_packages: int = 3
    package_ads: tuple[int, int] = (2, 4)
    package_audience: int = 14000  # impression users per package and period (capped at 70% of users)
    package_ctr: tuple[float, float] = (0.0035, 0.008)
    periods: tuple[tuple[str, str], tuple[str, str]] = (("2026-09-01", "2026-09-30"), ("2026-10-01", "2026-10-31"))

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready parameters (tuples become lists), stored with the world to detect rebuilds."""
        return _jsonable(asdict(self))

    def validate(self) -> None:
        """Raise ValueError with a clear message on knobs that make no sense."""
        checks = [
            (0 <= self.chinese_fraction <= 1, "chinese_fraction must lie in [0, 1]"),
            (abs(sum(self.split_fractions) - 1) < 1e-6 and min(self.split_fractions) >= 0, "split_fractions must sum to 1"),
            (128 <= self.image_size <= 2048, "image_size must lie in [128, 2048]"),
            (30 <= self.jpeg_quality <= 100, "jpeg_quality must lie in [30, 100]"),
            (0 < self.product_scale[0] <= self.product_scale[1] < 0.9, "product_scale must be an increasing range in (0, 0.9)"),
            (0 < self.distractor_scale[0] <= self.distractor_scale[1] < 0.9, "distractor_scale must be an increasing range in (0, 0.9)"),
            (0 <= self.n_distractors[0] <= self.n_distractors[1] <= 12, "n_distractors must be a range within [0, 12]"),
            (sum(self.background_weights.values()) > 0 and set(self.background_weights) <= {"photo", "pattern", "noise"},
             "background_weights: positive weights for photo, pattern, noise"),
            (0 <= self.p_name_in_text <= 1 and 0 <= self.p_name_printed <= 1, "probabilities must lie in [0, 1]"),
            (abs(sum(self.keyword_sources) - 1) < 1e-6, "keyword_sources must sum to 1"),
            (0 <= self.feature_share <= 1 and 0 <= self.interest_drift <= 1, "feature_share, interest_drift in [0, 1]"),
            (self.click_sharpness >= 0, "click_sharpness must be >= 0"),
            (self.impressions_per_ad >= 1, "impressions_per_ad must be >= 1"),
            (self.targeting_sharpness >= 0, "targeting_sharpness must be >= 0"),
            (0 < self.ad_ctr_median < 0.5, "ad_ctr_median must lie in (0, 0.5)"),
            (self.n_packages >= 0 and self.n_unseen_packages >= 0, "n_packages and n_unseen_packages must be >= 0"),
            (1 <= self.package_ads[0] <= self.package_ads[1], "package_ads must be an increasing range >= 1"),
            (0 < self.package_ctr[0] <= self.package_ctr[1] < 0.5, "package_ctr must be an increasing range in (0, 0.5)"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"demo knobs: {message}")


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value
