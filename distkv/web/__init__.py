"""The web page's static files (``static/``), served by :mod:`distkv.server.web`.

Plain files, no build step and no external assets: ``msgpack.js`` (the wire codec),
``client.js`` (the protocol: greeting, requests, streams with credit), ``app.js``
(the tree browser) and ``style.css``.
"""
