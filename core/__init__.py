"""AdLens engine: ads, regions, embeddings, matching and audiences; usable without Streamlit."""

__version__ = "0.1.0"
