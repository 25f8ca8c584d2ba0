"""Pass previews: HTML and CSS (SVG for the barcodes) drawn from a rendered pass.json and its
images, the same files a device gets. Pure: no storage, no network (like pkpass/)."""

from passhouse.preview.render import Preview, render_preview

__all__ = ["Preview", "render_preview"]
