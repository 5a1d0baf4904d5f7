"""Small Streamlit helpers shared by the AdLens pages (layout, status, images, cards, imports).

Pages stay thin: they call ``core`` for data and these helpers for the look. Nothing here holds
SQL or model logic.
"""
