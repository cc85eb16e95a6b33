"""The web console: server-rendered pages on the daemon's HTTP server.

`routes` answers the console's paths for the ingress server, asking the
Engine through the same gate and the same requests as the CLI; `pages`
renders them with Jinja2 templates; `net` draws a workflow's Petri net as
SVG; `live` streams a run's marking as server-sent events; `access`
keeps the token and the CSRF check.
"""
