"""The web page's files (HTML, CSS, JavaScript), served by :mod:`cesar_api.routes.page`."""
