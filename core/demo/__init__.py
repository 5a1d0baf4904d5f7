"""The embedded demo world: a deterministic, generated ad catalogue with users, clicks and packages.

``build_world`` makes it (``python -m core demo``); ``DEMO_LABEL`` and ``OPENMOJI_ATTRIBUTION`` are what the
app shows next to it. See docs/demo_world.md for the generative model.
"""

from core.demo.knobs import DemoKnobs
from core.demo.world import DEMO_LABEL, OPENMOJI_ATTRIBUTION, build_world, plan_world, resolve_knobs

__all__ = ["DEMO_LABEL", "OPENMOJI_ATTRIBUTION", "DemoKnobs", "build_world", "plan_world", "resolve_knobs"]
