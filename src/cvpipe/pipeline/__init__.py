"""The cross-validation pipeline: one application of the local engine.

It wires ``cvpipe.asl`` and ``cvpipe.integrations`` to this project's stack (``template.yaml``, the
definition in ``statemachine/``, the functions and the job image) and provides the ``cvpipe run`` and
``cvpipe models`` commands. The engine never imports it.
"""
