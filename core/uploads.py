"""The one size limit for everything a person hands to AdLens: uploads, import files, archive members.

``max_upload_mb`` (setting ``ADLENS_MAX_UPLOAD_MB``) is the same number as Streamlit's
``server.maxUploadSize`` in ``.streamlit/config.toml`` (a test keeps the two equal). Streamlit
enforces it in the browser; core enforces it again for every path that does not pass through the
browser (CLI imports, archives, folders) and for anything a page hands to core.
"""

from __future__ import annotations

from core.config import get_settings


class UploadTooLarge(ValueError):
    """A file over the upload size limit, with a message naming the limit."""


def max_upload_bytes() -> int:
    return get_settings().max_upload_mb * 1024 * 1024


def check_upload_size(name: str, size: int) -> None:
    """Raise :class:`UploadTooLarge` when ``size`` bytes is over the limit; the message names file, size and limit."""
    limit_mb = get_settings().max_upload_mb
    if size > limit_mb * 1024 * 1024:
        raise UploadTooLarge(
            f"{name} is too large: {size / (1024 * 1024):,.1f} MB, over the upload limit of {limit_mb:,} MB "
            "(setting ADLENS_MAX_UPLOAD_MB; the app's limit is server.maxUploadSize in .streamlit/config.toml)."
        )
