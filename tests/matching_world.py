"""A tiny catalog for the creative-selection tests: 6 categories in 2 groups, coloured creatives, a fake detector.

Categories carry demo-style meta (group, English / Chinese keywords). The keyword "fruit" is shared by the three
fruit categories (a 1:n phrase); "grapes" is held out (unseen). Each creative is a flat colour per category;
the fake detector reports two regions whose 8-d features encode the category (plus noise), so scorers can learn.
"""

from __future__ import annotations

import hashlib
import io

import numpy as np
from PIL import Image

from core.regions.base import DetectionResult

# name -> (name_zh, group, keywords, keywords_zh, colour, unseen)
CATEGORIES = {
    "apples": ("苹果", "food", ["fruit", "crisp"], ["水果", "脆甜"], (220, 30, 30), False),
    "bananas": ("香蕉", "food", ["fruit", "ripe"], ["水果", "香甜"], (230, 220, 40), False),
    "grapes": ("葡萄", "food", ["fruit", "vineyard"], ["水果", "无籽"], (120, 40, 160), True),
    "sneakers": ("运动鞋", "fashion", ["shoes", "running"], ["鞋子", "跑步"], (30, 160, 60), False),
    "boots": ("登山靴", "fashion", ["shoes", "hiking"], ["鞋子", "登山"], (120, 80, 40), False),
    "ties": ("领带", "fashion", ["office", "business"], ["办公", "商务"], (30, 60, 200), False),
}
ADS_PER_CATEGORY = 6
FEATURE_DIM = 8


def ad_ids() -> list[str]:
    return [f"{name}-{i}" for name in CATEGORIES for i in range(ADS_PER_CATEGORY)]


def _png(color: tuple[int, int, int], shade: int) -> bytes:
    buf = io.BytesIO()
    c = tuple(max(0, min(255, v + shade)) for v in color)
    Image.new("RGB", (64, 48), c).save(buf, format="PNG")
    return buf.getvalue()


def build_catalog(engine) -> None:
    from core.filestore import put_image
    from core.store import Ad, Category, session_scope

    with session_scope(engine) as s:
        for name, (zh, group, kw, kw_zh, color, unseen) in CATEGORIES.items():
            cat = Category(name=name, name_zh=zh, unseen=unseen, source="demo",
                           meta={"group": group, "keywords": kw, "keywords_zh": kw_zh})
            s.add(cat)
            s.flush()
            for i in range(ADS_PER_CATEGORY):
                data = _png(color, 3 * i)
                sha = hashlib.sha256(data).hexdigest()
                split = "test" if unseen or i >= 4 else ("val" if i == 3 else "train")
                s.add(Ad(id=f"{name}-{i}", text=f"Great {name} from Brand {i}, {kw[1]} and new", lang="en",
                         image_path=put_image(data, sha, ".png"), image_hash=sha, content_hash=sha, width=64, height=48,
                         category_id=cat.id, split=split, source="demo"))


class ColourDetector:
    """Two regions per creative; features = the category's code (from the colour) + small noise."""

    backend = "offline"
    version = "colour-test/1"
    device = "cpu"
    feature_dim = FEATURE_DIM

    def detect(self, images, *, conf=0.05, iou=0.5, max_det=50):  # noqa: ARG002
        out = []
        for img in images:
            r, g, b = img.getpixel((0, 0))
            code = np.array([r, g, b, r - g, g - b, b - r, (r + g + b) / 3, 128], np.float32) / 255.0
            rng = np.random.default_rng(int(r) * 65536 + int(g) * 256 + int(b))
            feats = np.stack([code + 0.02 * rng.standard_normal(FEATURE_DIM), 0.5 * code + 0.02 * rng.standard_normal(FEATURE_DIM)])
            out.append(DetectionResult(boxes=np.array([[4, 4, 40, 40], [30, 10, 60, 44]], np.float32),
                                       confidences=np.array([0.9, 0.5], np.float32), labels=["object", "thing"],
                                       features=feats.astype(np.float32), image_size=img.size, detector=self.version,
                                       backend=self.backend, device=self.device))
        return out


def use_colour_detector(monkeypatch) -> ColourDetector:
    """Make every detector lookup (auto / offline / yolo) return the colour detector."""
    # import the modules that bind get_detector by name BEFORE patching: one first imported while the
    # patch is active would keep the fake after the test (monkeypatch restores what it saw)
    import core.regions.analyze  # noqa: F401
    import core.regions.extract  # noqa: F401
    from core.regions import registry

    det = ColourDetector()

    def fake(requested=None, *, weights=None, device=None):  # noqa: ARG001
        return registry.DetectorChoice(detector=det, backend="offline", reason="test detector", device_reason="cpu")

    monkeypatch.setattr(registry, "get_detector", fake)
    monkeypatch.setattr("core.regions.extract.get_detector", fake)
    return det
