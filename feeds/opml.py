# TEMPORARY stub until the pages branch lands
OPML_MEDIA_TYPE = "text/x-opml; charset=utf-8"


def render_opml(site, specs, updated):
    return b"<opml/>"
