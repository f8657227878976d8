"""``gossip-registry render``: files rendered from the registry and kept current.

consul-template's job for this registry: a Jinja2 template reads the
registry through ``services()``, ``service(name, tag=None, passing=True)``
and ``nodes()``; the renderer follows those views with blocking queries,
rewrites the file (atomically) only when its text changes, waits for the
registry to settle (``--wait``), and runs a command (``nginx -s reload``).

- ``template.py``: loading and rendering, and which views a template read;
- ``settle.py``: the ``--wait MIN:MAX`` rule;
- ``output.py``: atomic write-if-changed;
- ``loop.py``: the trio loop tying them to ``AsyncRegistryClient``.

The command-line front end is ``gossip_registry/cli/render.py``.
"""
